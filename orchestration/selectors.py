"""Reads. Interfaces and the supervisor read through here."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils import timezone

from orchestration.models import (
    ENROLLMENT_LIVE_STATUSES,
    RUN_LIVE_STATUSES,
    SESSION_LIVE_STATUSES,
    EnrollmentStatus,
    FederatedRun,
    LogLine,
    Node,
    NodeEnrollment,
    NodeRole,
    NodeSession,
    Project,
    ProjectEvent,
    RoundMetric,
    SessionKind,
    SessionStatus,
    SupervisorHeartbeat,
)


def supervisors_alive() -> QuerySet[SupervisorHeartbeat]:
    cutoff = timezone.now() - timedelta(seconds=settings.SUPERVISOR_STALE_SECONDS)
    return SupervisorHeartbeat.objects.filter(beat_at__gte=cutoff, stopped_at__isnull=True)


def supervisor_is_alive(supervisor_id: Any) -> bool:
    return supervisor_id is not None and supervisors_alive().filter(pk=supervisor_id).exists()


def supervisor_status() -> dict[str, Any]:
    alive = list(supervisors_alive().order_by("-beat_at")[:5])
    newest = alive[0] if alive else SupervisorHeartbeat.objects.order_by("-beat_at").first()
    return {
        "supervisor_alive": bool(alive),
        "supervisor_count": len(alive),
        "supervisor_last_heartbeat": newest.beat_at.isoformat() if newest else None,
        "supervisor_hint": None
        if alive
        else "No supervisor is running: start one with `python manage.py runsupervisor`.",
    }


def session_live_superlink(*, project: Project) -> NodeSession | None:
    return (
        NodeSession.objects.select_related("node", "node__project")
        .filter(node__project=project, kind=SessionKind.SUPERLINK, status__in=SESSION_LIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def session_live_supernodes(*, node: Node) -> QuerySet[NodeSession]:
    return (
        NodeSession.objects.select_related("node")
        .filter(node=node, kind=SessionKind.SUPERNODE, status__in=SESSION_LIVE_STATUSES)
        .order_by("created_at")
    )


def session_latest(*, node: Node, kind: str) -> NodeSession | None:
    return NodeSession.objects.filter(node=node, kind=kind).order_by("-created_at").first()


def session_get(*, session_id: Any) -> NodeSession | None:
    return NodeSession.objects.select_related("node", "node__project").filter(pk=session_id).first()


def run_live(*, project: Project) -> FederatedRun | None:
    return (
        FederatedRun.objects.select_related("coordinator_session")
        .filter(project=project, status__in=RUN_LIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def run_get(*, run_id: Any) -> FederatedRun | None:
    return FederatedRun.objects.select_related("project", "coordinator_session").filter(pk=run_id).first()


def run_latest(*, project: Project) -> FederatedRun | None:
    return FederatedRun.objects.filter(project=project).order_by("-created_at").first()


def ports_in_use(*, host: str) -> set[int]:
    ports: set[int] = set()
    for config in NodeSession.objects.filter(status__in=SESSION_LIVE_STATUSES).values_list("runtime_config", flat=True):
        if isinstance(config, dict) and config.get("host") == host and isinstance(config.get("port"), int):
            ports.add(config["port"])
    return ports


def log_lines_after(
    *, session: NodeSession | None = None, run: FederatedRun | None = None, after: int = 0, limit: int = 1000
) -> list[LogLine]:
    owner = {"session": session} if session is not None else {"run": run}
    return list(LogLine.objects.filter(**owner, seq__gt=after).order_by("seq")[:limit])


def log_lines_before(
    *, session: NodeSession | None = None, run: FederatedRun | None = None, before: int, limit: int = 500
) -> list[LogLine]:
    owner = {"session": session} if session is not None else {"run": run}
    newest_first = LogLine.objects.filter(**owner, seq__lt=before).order_by("-seq")[:limit]
    return list(reversed(newest_first))


def log_last_seq(*, session_id: Any = None, run_id: Any = None) -> int:
    owner = {"session_id": session_id} if session_id is not None else {"run_id": run_id}
    return LogLine.objects.filter(**owner).aggregate(m=Max("seq"))["m"] or 0


def round_metrics(*, run: FederatedRun) -> list[RoundMetric]:
    return list(RoundMetric.objects.filter(run=run).order_by("round", "phase"))


def node_by_role(*, project: Project, role: NodeRole) -> Node | None:
    return Node.objects.filter(project=project, role=role).order_by("created_at").first()


# ----------------------------------------------------------------- supervisor's reads
def sessions_to_claim(*, node_ids: list[Any]) -> list[NodeSession]:
    return list(
        NodeSession.objects.select_related("node")
        .filter(node_id__in=node_ids, status=SessionStatus.REQUESTED)
        .order_by("created_at")
    )


def runs_to_claim(*, project_ids: list[Any]) -> list[FederatedRun]:
    return list(
        FederatedRun.objects.select_related("coordinator_session")
        .filter(project_id__in=project_ids, status="requested")
        .order_by("created_at")
    )


def sessions_stop_requested(*, supervisor_id: Any) -> list[NodeSession]:
    return list(
        NodeSession.objects.filter(
            supervisor_id=supervisor_id,
            stop_requested_at__isnull=False,
            status__in=(SessionStatus.STARTING, SessionStatus.RUNNING),
        )
    )


def runs_stop_requested(*, supervisor_id: Any) -> list[FederatedRun]:
    return list(
        FederatedRun.objects.filter(
            supervisor_id=supervisor_id, stop_requested_at__isnull=False, status__in=("starting", "running")
        )
    )


def orphaned_sessions(*, node_ids: list[Any]) -> list[NodeSession]:
    """Live rows claimed by a supervisor that no longer beats."""
    alive = set(supervisors_alive().values_list("id", flat=True))
    rows = NodeSession.objects.filter(
        node_id__in=node_ids, status__in=(SessionStatus.STARTING, SessionStatus.RUNNING, SessionStatus.STOPPING)
    )
    return [row for row in rows if row.supervisor_id not in alive]


def orphaned_runs(*, project_ids: list[Any]) -> list[FederatedRun]:
    alive = set(supervisors_alive().values_list("id", flat=True))
    rows = FederatedRun.objects.filter(project_id__in=project_ids, status__in=("starting", "running", "stopping"))
    return [row for row in rows if row.supervisor_id not in alive]


def enrollments_pending(*, project_ids: list[Any]) -> list[NodeEnrollment]:
    return list(
        NodeEnrollment.objects.select_related("node")
        .filter(
            node__project_id__in=project_ids,
            supervisor_id__isnull=True,
            status__in=(EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED),
        )
        .order_by("created_at")
    )


def node_get(*, node_id: Any) -> Node | None:
    return Node.objects.select_related("project").filter(pk=node_id).first()


def supervisor_heartbeat_get(*, supervisor_id: Any) -> SupervisorHeartbeat | None:
    return SupervisorHeartbeat.objects.filter(pk=supervisor_id).first()


def sessions_ended_since(*, node: Node, since: datetime) -> list[NodeSession]:
    """The node's SuperNode sessions created since `since` that already ended by themselves."""
    return list(
        NodeSession.objects.filter(
            node=node,
            kind=SessionKind.SUPERNODE,
            created_at__gte=since,
            status__in=(SessionStatus.FAILED, SessionStatus.LOST, SessionStatus.EXITED),
        )
    )


# ---------------------------------------------------------------- housekeeping
_HOME_NAME = re.compile(
    r"^(?P<kind>superlink|supernode|run|enrollment)-(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def flower_homes_prunable(*, before: datetime) -> list[Path]:
    """FLWR_HOME dirs of sessions, runs and enrollments that ended before `before`.

    Each holds Flower's scratch state (its config.toml and a copy of the app per run), never a
    record FedML needs. Untouched since `before` as well, so nothing live is ever picked.
    """
    root = Path(settings.FLWR_HOME_ROOT)
    if not root.is_dir():
        return []
    # Per kind of home: the rows that still need theirs (missing rows need nothing).
    still_needed: dict[str, QuerySet[Any]] = {
        "superlink": NodeSession.objects.exclude(ended_at__lt=before),
        "supernode": NodeSession.objects.exclude(ended_at__lt=before),
        "run": FederatedRun.objects.exclude(ended_at__lt=before),
        "enrollment": NodeEnrollment.objects.filter(
            status__in=(EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED)
        ),
    }
    candidates: dict[str, dict[str, Path]] = {kind: {} for kind in still_needed}
    for path in root.iterdir():
        match = _HOME_NAME.match(path.name)
        if match and path.is_dir() and not path.is_symlink() and _newest_mtime(path) < before.timestamp():
            candidates[match.group("kind")][match.group("id")] = path
    prunable: list[Path] = []
    for kind, paths in candidates.items():
        needed = {str(pk) for pk in still_needed[kind].filter(pk__in=list(paths)).values_list("pk", flat=True)}
        prunable += [path for key, path in paths.items() if key not in needed]
    return sorted(prunable)


def flower_app_copies_prunable(*, before: datetime) -> list[Path]:
    """App copies in the homes of live SuperLinks and SuperNodes, untouched since `before`.

    Flower installs the app once per run into the home of every process that runs it, and a
    site's SuperNode lives for months. Only while no run is live: an idle copy is not in use.
    """
    root = Path(settings.FLWR_HOME_ROOT)
    if not root.is_dir() or FederatedRun.objects.filter(status__in=RUN_LIVE_STATUSES).exists():
        return []
    live = NodeSession.objects.filter(status__in=SESSION_LIVE_STATUSES).values_list("kind", "pk")
    copies: list[Path] = []
    for kind, pk in live:
        apps = root / f"{kind}-{pk}" / "apps"
        if not apps.is_dir() or apps.is_symlink():
            continue
        for copy in apps.iterdir():
            idle = copy.is_dir() and not copy.is_symlink() and _newest_mtime(copy) < before.timestamp()
            if idle:
                copies.append(copy)
    return sorted(copies)


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def project_events_before(*, before: datetime) -> QuerySet[ProjectEvent]:
    return ProjectEvent.objects.filter(created_at__lt=before)


def supervisor_heartbeats_prunable(*, before: datetime) -> QuerySet[SupervisorHeartbeat]:
    """Heartbeats of supervisors gone since `before` that no live row still names (reconcile reads them)."""
    referenced = (
        set(NodeSession.objects.filter(status__in=SESSION_LIVE_STATUSES).values_list("supervisor_id", flat=True))
        | set(FederatedRun.objects.filter(status__in=RUN_LIVE_STATUSES).values_list("supervisor_id", flat=True))
        | set(
            NodeEnrollment.objects.filter(status__in=ENROLLMENT_LIVE_STATUSES).values_list("supervisor_id", flat=True)
        )
    )
    return SupervisorHeartbeat.objects.filter(beat_at__lt=before).exclude(pk__in=[i for i in referenced if i])
