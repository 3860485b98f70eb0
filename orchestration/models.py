"""FedML's orchestration records: node sessions, runs, log lines, metrics, events, enrollments.

Projects and nodes (who takes part) live in `accounts.models`. Table names mirror the Supabase schema the deployments already use."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from accounts.models import Node, NodeRole, Project
from orchestration.states import (
    ENROLLMENT_LIVE_STATUSES,
    RUN_LIVE_STATUSES,
    SESSION_LIVE_STATUSES,
    EnrollmentQuerySet,
    EnrollmentStatus,
    RunQuerySet,
    RunStatus,
    SessionKind,
    SessionQuerySet,
    SessionStatus,
)

__all__ = [
    "ENROLLMENT_LIVE_STATUSES",
    "RUN_LIVE_STATUSES",
    "SESSION_LIVE_STATUSES",
    "EnrollmentStatus",
    "FederatedRun",
    "LogLine",
    "LogStream",
    "Node",
    "NodeEnrollment",
    "NodeRole",
    "NodeSession",
    "Project",
    "ProjectEvent",
    "RoundMetric",
    "RoundPhase",
    "RunStatus",
    "SessionKind",
    "SessionStatus",
    "SupervisorHeartbeat",
]


class NodeSession(models.Model):
    """One Flower process (a SuperLink or a SuperNode) that FedML runs for a node."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="sessions")
    kind = models.CharField(max_length=20, choices=SessionKind.choices)
    status = models.TextField(choices=SessionStatus.choices, default=SessionStatus.REQUESTED)
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    runtime_config = models.JSONField(blank=True, default=dict)
    # The newest lines (FEDML_LOG_TAIL_LINES of them), rewritten per batch, for clients that read this column.
    log_stream = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    log_path = models.CharField(max_length=500, blank=True, default="")
    exit_code = models.IntegerField(null=True, blank=True)
    signal = models.IntegerField(null=True, blank=True)
    status_detail = models.TextField(blank=True, default="")
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    supervisor_id = models.UUIDField(null=True, blank=True)

    objects = SessionQuerySet.as_manager()

    class Meta:
        db_table = "node_sessions"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], name="node_sessions_status_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=SessionKind.values), name="node_sessions_kind_check"),
            models.CheckConstraint(condition=Q(status__in=SessionStatus.values), name="node_sessions_status_check"),
            # At most one live SuperLink per coordinator node; the database, not a race, decides.
            models.UniqueConstraint(
                fields=["node"],
                condition=Q(kind=SessionKind.SUPERLINK) & Q(status__in=SESSION_LIVE_STATUSES),
                name="node_sessions_one_live_superlink",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in SESSION_LIVE_STATUSES


class FederatedRun(models.Model):
    """One Flower run, launched with `flwr run` against the project's SuperLink."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    status = models.TextField(choices=RunStatus.choices, default=RunStatus.REQUESTED)
    label = models.TextField(null=True, blank=True)
    config = models.JSONField(blank=True, default=dict)
    coordinator_session = models.ForeignKey(
        NodeSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    log_stream = models.TextField(blank=True, default="")
    metrics = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    # Flower run ids are unsigned 64-bit integers: kept as text to avoid overflow.
    flower_run_id = models.CharField(max_length=24, blank=True, default="")
    federation_name = models.CharField(max_length=100, blank=True, default="")
    log_path = models.CharField(max_length=500, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    signal = models.IntegerField(null=True, blank=True)
    status_detail = models.TextField(blank=True, default="")
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    supervisor_id = models.UUIDField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        db_table = "federated_runs"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status"], name="federated_runs_status_idx"),
            models.Index(fields=["project", "status"], name="idx_runs_project_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="federated_runs_status_check"),
            # One live run per project at a time.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=RUN_LIVE_STATUSES),
                name="federated_runs_one_live_run",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.label or self.id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in RUN_LIVE_STATUSES


class LogStream(models.TextChoices):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"  # written by FedML itself (spawned, exited, signals)


class LogLine(models.Model):
    """One line of a process's output. Append-only; seq is gap-free per session or run."""

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        NodeSession, on_delete=models.CASCADE, null=True, blank=True, related_name="log_lines", db_index=False
    )
    run = models.ForeignKey(
        FederatedRun, on_delete=models.CASCADE, null=True, blank=True, related_name="log_lines", db_index=False
    )
    seq = models.BigIntegerField()
    stream = models.CharField(max_length=8, choices=LogStream.choices)
    source = models.CharField(max_length=64, blank=True, default="")
    ts = models.DateTimeField()
    text = models.TextField()

    class Meta:
        db_table = "log_lines"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(session__isnull=False) & Q(run__isnull=True))
                | (Q(session__isnull=True) & Q(run__isnull=False)),
                name="log_lines_one_owner",
            ),
            models.CheckConstraint(condition=Q(stream__in=LogStream.values), name="log_lines_stream_check"),
            # These unique indexes are also the indexes for "lines of X after seq N".
            models.UniqueConstraint(
                fields=["session", "seq"], condition=Q(session__isnull=False), name="log_lines_session_seq_uniq"
            ),
            models.UniqueConstraint(
                fields=["run", "seq"], condition=Q(run__isnull=False), name="log_lines_run_seq_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.seq}: {self.text[:80]}"


class RoundPhase(models.TextChoices):
    TRAIN = "train"
    EVALUATE = "evaluate"


class RoundMetric(models.Model):
    """Metrics of one round's train or evaluate phase, aggregated and per node."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(FederatedRun, on_delete=models.CASCADE, related_name="round_metrics", db_index=False)
    round = models.PositiveIntegerField()
    phase = models.CharField(max_length=10, choices=RoundPhase.choices)
    aggregated = models.JSONField(default=dict)
    per_node = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "round_metrics"
        ordering = ["round", "phase"]
        constraints = [
            models.UniqueConstraint(fields=["run", "round", "phase"], name="round_metrics_run_round_phase_uniq"),
            models.CheckConstraint(condition=Q(phase__in=RoundPhase.values), name="round_metrics_phase_check"),
        ]

    def __str__(self) -> str:
        return f"round {self.round} {self.phase}"


class SupervisorHeartbeat(models.Model):
    """Written every second by each live `runsupervisor`; /health reads it."""

    id = models.UUIDField(primary_key=True, editable=False)
    hostname = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # The database outages it rode out (it cannot beat during one; the first beat after says so).
    database_outages = models.IntegerField(default=0, db_default=0)  # raw SQL inserts too
    last_database_outage_started_at = models.DateTimeField(null=True, blank=True)
    last_database_outage_ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "supervisor_heartbeats"
        ordering = ["-beat_at"]

    def __str__(self) -> str:
        return f"supervisor {self.hostname}:{self.pid}"


class ProjectEvent(models.Model):
    """Append-only status changes and finished rounds of a project; seq is gap-free per project."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "project_events"
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["project", "seq"], name="project_events_project_seq_uniq")]

    def __str__(self) -> str:
        return f"{self.seq} {self.type}"


class NodeEnrollment(models.Model):
    """A participant node's SuperNode public key, registered with Flower's SuperNode authentication."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="enrollments")
    public_key = models.TextField()
    status = models.CharField(max_length=20, choices=EnrollmentStatus.choices, default=EnrollmentStatus.REQUESTED)
    flower_node_id = models.CharField(max_length=24, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    supervisor_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = EnrollmentQuerySet.as_manager()

    class Meta:
        db_table = "node_enrollments"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=EnrollmentStatus.values), name="node_enrollments_status_check"
            ),
            models.UniqueConstraint(
                fields=["node"], condition=Q(status__in=ENROLLMENT_LIVE_STATUSES), name="node_enrollments_one_live"
            ),
        ]

    def __str__(self) -> str:
        return f"enrollment of {self.node_id} ({self.status})"
