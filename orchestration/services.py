"""Every write to FedML's state goes through here: APIs, admin, commands and the supervisor."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from orchestration import doorbell, flower, selectors
from orchestration.errors import Conflict, InvalidInput, NotFound, SupervisorUnavailable
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
    RunStatus,
    SessionKind,
    SessionStatus,
    SupervisorHeartbeat,
)

FEDERATION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUPERVISOR_HINT = (
    "No supervisor is running, so nothing can be started. Start one with `python manage.py runsupervisor`."
)


def _invalid(exc: flower.FlowerArgError) -> InvalidInput:
    return InvalidInput(exc.message, field=exc.field)


# ----------------------------------------------------------------- projects and nodes
def project_ensure_default() -> Project:
    """The configured project (PROJECT_SLUG), created on first use."""
    try:
        project, _ = Project.objects.get_or_create(slug=settings.PROJECT_SLUG, defaults={"name": settings.PROJECT_NAME})
    except IntegrityError:  # another worker created it first
        project = Project.objects.get(slug=settings.PROJECT_SLUG)
    return project


def _node_ensure(*, project: Project, external_id: str, role: str, display_name: str) -> Node:
    try:
        node, _ = Node.objects.get_or_create(
            external_id=external_id, defaults={"project": project, "role": role, "display_name": display_name}
        )
    except IntegrityError:
        node = Node.objects.get(external_id=external_id)
    return node


def coordinator_node_ensure() -> Node:
    project = project_ensure_default()
    return _node_ensure(
        project=project,
        external_id=settings.COORDINATOR_NODE_ID,
        role=NodeRole.COORDINATOR,
        display_name=settings.COORDINATOR_NODE_NAME,
    )


def participant_node_ensure() -> Node:
    project = project_ensure_default()
    return _node_ensure(
        project=project,
        external_id=settings.PARTICIPANT_NODE_ID,
        role=NodeRole.PARTICIPANT,
        display_name=settings.PARTICIPANT_NODE_NAME,
    )


# ----------------------------------------------------------------- project events
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def session_event_payload(session: NodeSession) -> dict[str, Any]:
    return {
        "session_id": str(session.pk),
        "node_id": str(session.node_id),
        "kind": session.kind,
        "status": session.status,
        "pid": session.pid,
        "exit_code": session.exit_code,
        "signal": session.signal,
        "started_at": _iso(session.started_at),
        "ended_at": _iso(session.ended_at),
        "status_detail": (session.status_detail or "").splitlines()[0][:500] if session.status_detail else "",
    }


def run_event_payload(run: FederatedRun) -> dict[str, Any]:
    return {
        "run_id": str(run.pk),
        "flower_run_id": run.flower_run_id or None,
        "status": run.status,
        "pid": run.pid,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "status_detail": (run.status_detail or "").splitlines()[0][:500] if run.status_detail else "",
    }


def event_emit(*, project_id: Any, type: str, payload: dict[str, Any]) -> ProjectEvent:
    """Append a project event with the next gap-free seq; call inside the writing transaction.

    The UPDATE takes the project row's lock until commit, so concurrent writers commit in seq order.
    """
    with transaction.atomic():
        Project.objects.filter(pk=project_id).update(event_seq=F("event_seq") + 1)
        seq = Project.objects.filter(pk=project_id).values_list("event_seq", flat=True).get()
        event = ProjectEvent.objects.create(project_id=project_id, seq=seq, type=type, payload=payload)
    transaction.on_commit(lambda: doorbell.ring(doorbell.events_group(project_id)))
    return event


def _emit_row(model: type[NodeSession] | type[FederatedRun], pk: Any) -> None:
    if model is NodeSession:
        session = NodeSession.objects.select_related("node").get(pk=pk)
        event_emit(project_id=session.node.project_id, type="session.status", payload=session_event_payload(session))
    else:
        run = FederatedRun.objects.get(pk=pk)
        event_emit(project_id=run.project_id, type="run.status", payload=run_event_payload(run))


def _emit_if(model: type[NodeSession] | type[FederatedRun], pk: Any, changed: int) -> bool:
    """After a conditional update in the same transaction: record the change as an event."""
    if changed:
        _emit_row(model, pk)
    return bool(changed)


# ----------------------------------------------------------------- requests (web side)
def supervisor_require_alive() -> None:
    if not selectors.supervisors_alive().exists():
        raise SupervisorUnavailable(SUPERVISOR_HINT, extra={"hint": "python manage.py runsupervisor"})


def _wait_for(fetch: Any, *, done: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    row = fetch()
    while not done(row) and time.monotonic() < deadline:
        time.sleep(0.05)
        row = fetch()
    return row


def session_wait_spawned(*, session_id: Any, timeout: float | None = None) -> NodeSession:
    """Wait until the supervisor has spawned the session (or failed to).

    If no supervisor claimed it in time the request is withdrawn, so no half-made row stays.
    """
    timeout = settings.START_WAIT_SECONDS if timeout is None else timeout
    session = _wait_for(
        lambda: NodeSession.objects.get(pk=session_id),
        done=lambda s: s.status not in (SessionStatus.REQUESTED, SessionStatus.STARTING),
        timeout=timeout,
    )
    if session.status == SessionStatus.REQUESTED:
        if session_withdraw(session=session):
            raise SupervisorUnavailable(
                f"No supervisor picked up the request within {timeout:g}s. {SUPERVISOR_HINT}",
                extra={"hint": "python manage.py runsupervisor"},
            )
        session = NodeSession.objects.get(pk=session_id)
    return session


@dataclass(frozen=True)
class _Listen:
    host: str
    port: int


def _check_port_free(*, host: str, port: int, field: str) -> None:
    if port in selectors.ports_in_use(host=host):
        raise Conflict(f"{field}: port {port} on {host} is already used by a running FedML process", field=field)


@transaction.atomic
def superlink_request_start(
    *,
    node: Node,
    insecure: bool = True,
    certificates_path: str | None = None,
    listen_address: str | None = None,
    extra_args: list[str] | None = None,
) -> NodeSession:
    """Record the intent to start the SuperLink; the supervisor spawns it."""
    if node.role != NodeRole.COORDINATOR:
        raise InvalidInput("only a coordinator node runs a SuperLink", field="node")
    try:
        host, port = flower.parse_host_port(listen_address or settings.SUPERLINK_ADDRESS, field="listen_address")
        certificates = None
        if not insecure:
            if not certificates_path:
                raise flower.FlowerArgError("certificates_path", "certificates_path is required when insecure is false")
            certificates = flower.server_certificates(certificates_path, root=settings.CERTIFICATES_DIR)
        elif certificates_path:
            raise flower.FlowerArgError("certificates_path", "certificates_path is only used when insecure is false")
        args = flower.validate_extra_args(extra_args, allowed=flower.SUPERLINK_EXTRA_FLAGS)
    except flower.FlowerArgError as exc:
        raise _invalid(exc) from None
    supervisor_require_alive()
    Node.objects.select_for_update().filter(pk=node.pk).first()
    existing = selectors.session_live_superlink(project=node.project)
    if existing is not None:
        raise Conflict(
            f"a SuperLink is already {existing.status} (session {existing.id})", extra={"session_id": str(existing.id)}
        )
    _check_port_free(host=host, port=port, field="listen_address")
    runtime_config: dict[str, Any] = {
        "host": host,
        "port": port,
        "address": f"{host}:{port}",
        "insecure": insecure,
        "certificates": None if certificates is None else {k: str(v) for k, v in certificates.__dict__.items()},
        "extra_args": args,
        "database": str(settings.DATA_DIR / "superlink" / "state.db"),
    }
    try:
        with transaction.atomic():
            session = NodeSession.objects.create(node=node, kind=SessionKind.SUPERLINK, runtime_config=runtime_config)
            _emit_row(NodeSession, session.pk)
            return session
    except IntegrityError:
        raise Conflict("a SuperLink is already running for this coordinator") from None


@transaction.atomic
def _withdraw_on_stop(model: type[NodeSession] | type[FederatedRun], pk: Any, requested: str, stopped: str) -> bool:
    changed = model.objects.filter(pk=pk, status=requested).update(
        status=stopped, ended_at=timezone.now(), status_detail="withdrawn before a supervisor started it"
    )
    return _emit_if(model, pk, changed)


@transaction.atomic
def session_withdraw(*, session: NodeSession) -> bool:
    """Delete a request no supervisor claimed (the caller answers 503); tell subscribers it is gone."""
    if not NodeSession.objects.filter(pk=session.pk, status=SessionStatus.REQUESTED).delete()[0]:
        return False
    event_emit(project_id=session.node.project_id, type="session.deleted", payload={"session_id": str(session.pk)})
    return True


@transaction.atomic
def run_withdraw(*, run: FederatedRun) -> bool:
    if not FederatedRun.objects.filter(pk=run.pk, status=RunStatus.REQUESTED).delete()[0]:
        return False
    event_emit(project_id=run.project_id, type="run.deleted", payload={"run_id": str(run.pk)})
    return True


def session_request_stop(*, session: NodeSession) -> NodeSession:
    """Ask the supervisor to stop a session. Works from any worker: the database carries it."""
    if not session.is_live:
        raise Conflict(f"session {session.id} is not running (status {session.status})")
    # Never claimed: withdraw it here, no process exists.
    if _withdraw_on_stop(NodeSession, session.pk, SessionStatus.REQUESTED, SessionStatus.STOPPED):
        return NodeSession.objects.get(pk=session.pk)
    NodeSession.objects.filter(pk=session.pk, stop_requested_at__isnull=True).update(stop_requested_at=timezone.now())
    return NodeSession.objects.get(pk=session.pk)


def session_wait_ended(*, session_id: Any, timeout: float) -> NodeSession:
    return _wait_for(
        lambda: NodeSession.objects.get(pk=session_id),
        done=lambda s: s.status not in SESSION_LIVE_STATUSES,
        timeout=timeout,
    )


def superlink_request_stop(*, node: Node) -> NodeSession:
    session = selectors.session_live_superlink(project=node.project)
    if session is None:
        raise Conflict("no SuperLink is running")
    return session_request_stop(session=session)


@transaction.atomic
def run_request_start(
    *,
    project: Project,
    federation_name: str = "production",
    stream: bool = True,
    extra_args: list[str] | None = None,
    label: str = "",
) -> FederatedRun:
    """Record the intent to start a Flower run against the project's SuperLink."""
    if not isinstance(federation_name, str) or not FEDERATION_NAME_RE.match(federation_name):
        raise InvalidInput("federation_name must be 1-64 letters, digits, '-' or '_'", field="federation_name")
    try:
        args = flower.validate_extra_args(extra_args, allowed=flower.RUN_EXTRA_FLAGS)
    except flower.FlowerArgError as exc:
        raise _invalid(exc) from None
    app_config = flower.read_app_config(settings.FLOWER_APP_DIR)
    overrides: dict[str, Any] = {}
    for index, token in enumerate(args):
        if token == "--run-config":  # validate_extra_args normalised `--flag=value` to two items
            for key, value in flower.parse_run_config(args[index + 1]).items():
                if key not in app_config:
                    # The SuperLink would refuse the run; say so now, naming the key.
                    raise InvalidInput(
                        f"--run-config: {key!r} is not a key of the app's [tool.flwr.app.config] "
                        f"(its keys: {', '.join(sorted(set(app_config) - flower.RESERVED_RUN_CONFIG_KEYS))})",
                        field="extra_args",
                    )
                overrides[key] = flower.run_config_value(value)
    rounds = overrides.get("num-server-rounds", app_config.get("num-server-rounds", 0))
    if not re.fullmatch(r"\d{1,9}", str(rounds), re.ASCII):
        raise InvalidInput(f"num-server-rounds must be a non-negative integer, got {rounds!r}", field="extra_args")
    num_rounds = int(rounds)
    supervisor_require_alive()
    superlink = selectors.session_live_superlink(project=project)
    if superlink is None or superlink.status != SessionStatus.RUNNING:
        raise Conflict("no SuperLink is running: start it first (POST /api/coordinator/superlink/start)")
    active = selectors.run_live(project=project)
    if active is not None:
        raise Conflict(f"run {active.id} is already {active.status}", extra={"run_id": str(active.id)})
    config = {
        "federation_name": federation_name,
        "stream": bool(stream),
        "extra_args": args,
        "app_config": {**app_config, **overrides},
        "num_rounds": num_rounds,
    }
    try:
        with transaction.atomic():
            run = FederatedRun.objects.create(
                project=project,
                coordinator_session=superlink,
                federation_name=federation_name,
                label=label or f"run {timezone.now():%Y-%m-%d %H:%M:%S}",
                config=config,
            )
            _emit_row(FederatedRun, run.pk)
            return run
    except IntegrityError:
        raise Conflict("a run is already active for this project") from None


def run_wait_spawned(*, run_id: Any, timeout: float | None = None) -> FederatedRun:
    timeout = settings.START_WAIT_SECONDS if timeout is None else timeout
    run = _wait_for(
        lambda: FederatedRun.objects.get(pk=run_id),
        done=lambda r: r.status != RunStatus.REQUESTED and (r.status != RunStatus.STARTING or r.pid is not None),
        timeout=timeout,
    )
    if run.status == RunStatus.REQUESTED:
        if run_withdraw(run=run):
            raise SupervisorUnavailable(f"No supervisor picked up the run within {timeout:g}s. {SUPERVISOR_HINT}")
        run = FederatedRun.objects.get(pk=run_id)
    return run


def run_wait_flower_id(*, run_id: Any, timeout: float) -> FederatedRun:
    return _wait_for(
        lambda: FederatedRun.objects.get(pk=run_id),
        done=lambda r: bool(r.flower_run_id) or r.status not in RUN_LIVE_STATUSES,
        timeout=timeout,
    )


def run_wait_ended(*, run_id: Any, timeout: float) -> FederatedRun:
    return _wait_for(
        lambda: FederatedRun.objects.get(pk=run_id),
        done=lambda r: r.status not in RUN_LIVE_STATUSES,
        timeout=timeout,
    )


def run_request_stop(*, project: Project) -> FederatedRun:
    run = selectors.run_live(project=project)
    if run is None:
        raise Conflict("no run is active")
    if _withdraw_on_stop(FederatedRun, run.pk, RunStatus.REQUESTED, RunStatus.STOPPED):
        return FederatedRun.objects.get(pk=run.pk)
    FederatedRun.objects.filter(pk=run.pk, stop_requested_at__isnull=True).update(stop_requested_at=timezone.now())
    return FederatedRun.objects.get(pk=run.pk)


@transaction.atomic
def node_enrollment_request(*, node: Node, public_key: str) -> NodeEnrollment:
    """Ask the supervisor to register a participant node's SuperNode key with the SuperLink."""
    if node.role != NodeRole.PARTICIPANT:
        raise InvalidInput("only participant nodes run SuperNodes", field="node_id")
    try:
        key = flower.validate_supernode_public_key(public_key)
    except flower.FlowerArgError as exc:
        raise _invalid(exc) from None
    supervisor_require_alive()
    live = NodeEnrollment.objects.filter(node=node, status__in=ENROLLMENT_LIVE_STATUSES).first()
    if live is not None:
        raise Conflict(f"node {node.pk} is already enrolled ({live.status}); revoke it first", field="node_id")
    try:
        with transaction.atomic():
            enrollment = NodeEnrollment.objects.create(node=node, public_key=key)
    except IntegrityError:
        raise Conflict(f"node {node.pk} is already enrolled", field="node_id") from None
    event_emit(project_id=node.project_id, type="node.enrollment", payload=enrollment_payload(enrollment))
    return enrollment


@transaction.atomic
def node_enrollment_revoke(*, node: Node) -> NodeEnrollment:
    """Unregister the node's key: its SuperNodes can no longer join."""
    enrollment = (
        NodeEnrollment.objects.select_for_update().filter(node=node, status__in=ENROLLMENT_LIVE_STATUSES).first()
    )
    if enrollment is None:
        raise Conflict(f"node {node.pk} is not enrolled", field="node_id")
    if enrollment.status == EnrollmentStatus.REQUESTED and enrollment.supervisor_id is None:
        _enrollment_set(enrollment.pk, status=EnrollmentStatus.REVOKED, revoked_at=timezone.now(), detail="withdrawn")
    elif enrollment.status == EnrollmentStatus.REGISTERED:
        supervisor_require_alive()
        _enrollment_set(enrollment.pk, status=EnrollmentStatus.REVOKE_REQUESTED)
    return NodeEnrollment.objects.get(pk=enrollment.pk)


def enrollment_payload(enrollment: NodeEnrollment) -> dict[str, Any]:
    return {
        "enrollment_id": str(enrollment.pk),
        "node_id": str(enrollment.node_id),
        "status": enrollment.status,
        "flower_node_id": enrollment.flower_node_id or None,
        "detail": enrollment.detail[:500],
    }


def _enrollment_set(enrollment_id: Any, **changes: Any) -> None:
    NodeEnrollment.objects.filter(pk=enrollment_id).update(**changes)
    enrollment = NodeEnrollment.objects.select_related("node").get(pk=enrollment_id)
    event_emit(project_id=enrollment.node.project_id, type="node.enrollment", payload=enrollment_payload(enrollment))


def enrollment_wait(*, enrollment_id: Any, timeout: float) -> NodeEnrollment:
    return _wait_for(
        lambda: NodeEnrollment.objects.get(pk=enrollment_id),
        done=lambda e: e.status not in (EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED),
        timeout=timeout,
    )


def enrollment_claim(*, enrollment_id: Any, supervisor_id: Any) -> bool:
    """The supervisor takes one pending registration or revocation (a conditional update)."""
    return bool(
        NodeEnrollment.objects.filter(
            pk=enrollment_id,
            supervisor_id__isnull=True,
            status__in=(EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED),
        ).update(supervisor_id=supervisor_id)
    )


@transaction.atomic
def enrollment_mark_registered(*, enrollment_id: Any, flower_node_id: str) -> None:
    _enrollment_set(
        enrollment_id,
        status=EnrollmentStatus.REGISTERED,
        flower_node_id=flower_node_id,
        registered_at=timezone.now(),
        supervisor_id=None,
        detail="",
    )


@transaction.atomic
def enrollment_mark_revoked(*, enrollment_id: Any) -> None:
    _enrollment_set(enrollment_id, status=EnrollmentStatus.REVOKED, revoked_at=timezone.now(), supervisor_id=None)


@transaction.atomic
def enrollment_mark_failed(*, enrollment_id: Any, detail: str, keep_status: bool) -> None:
    """Registration failed (`keep_status=False`: the row ends failed) or revocation must be retried."""
    changes: dict[str, Any] = {"detail": detail[:5000], "supervisor_id": None}
    if not keep_status:
        changes["status"] = EnrollmentStatus.FAILED
    _enrollment_set(enrollment_id, **changes)


def enrollment_release_dead(*, alive_supervisor_ids: set[Any]) -> int:
    """Pending work claimed by a supervisor that died goes back to the queue."""
    return (
        NodeEnrollment.objects.filter(supervisor_id__isnull=False)
        .exclude(supervisor_id__in=alive_supervisor_ids)
        .update(supervisor_id=None)
    )


def session_get_or_404(*, session_id: Any, node: Node | None = None) -> NodeSession:
    session = selectors.session_get(session_id=session_id)
    if session is None or (node is not None and session.node_id != node.pk):
        raise NotFound(f"session {session_id} not found", field="session_id")
    return session


# ----------------------------------------------------------------- supervisor side
def supervisor_heartbeat(*, supervisor_id: Any, hostname: str, pid: int, started_at: datetime) -> None:
    now = timezone.now()
    updated = SupervisorHeartbeat.objects.filter(pk=supervisor_id).update(beat_at=now)
    if not updated:
        SupervisorHeartbeat.objects.create(
            id=supervisor_id, hostname=hostname, pid=pid, started_at=started_at, beat_at=now
        )


def supervisor_mark_stopped(*, supervisor_id: Any) -> None:
    SupervisorHeartbeat.objects.filter(pk=supervisor_id).update(stopped_at=timezone.now())


@transaction.atomic
def session_claim(*, session_id: Any, supervisor_id: Any) -> bool:
    """Conditional update: exactly one supervisor wins a requested session."""
    return _emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status=SessionStatus.REQUESTED).update(
            status=SessionStatus.STARTING, supervisor_id=supervisor_id
        ),
    )


@transaction.atomic
def session_mark_running(*, session_id: Any, pid: int, log_path: str, identity: dict[str, Any]) -> None:
    session = NodeSession.objects.get(pk=session_id)
    config = {**session.runtime_config, "process": identity}
    _emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status=SessionStatus.STARTING).update(
            status=SessionStatus.RUNNING, pid=pid, started_at=timezone.now(), log_path=log_path, runtime_config=config
        ),
    )


@transaction.atomic
def session_mark_stopping(*, session_id: Any) -> bool:
    return _emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=(SessionStatus.STARTING, SessionStatus.RUNNING)).update(
            status=SessionStatus.STOPPING
        ),
    )


@transaction.atomic
def session_mark_ended(
    *, session_id: Any, exit_code: int | None, signal: int | None, stop_requested: bool, detail: str = ""
) -> None:
    if stop_requested:
        status = SessionStatus.STOPPED
    elif exit_code == 0:
        status = SessionStatus.EXITED
    else:
        status = SessionStatus.FAILED
    _emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=SESSION_LIVE_STATUSES).update(
            status=status, exit_code=exit_code, signal=signal, ended_at=timezone.now(), status_detail=detail
        ),
    )


@transaction.atomic
def session_mark_failed_to_start(*, session_id: Any, detail: str) -> None:
    _emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=SESSION_LIVE_STATUSES).update(
            status=SessionStatus.FAILED, ended_at=timezone.now(), status_detail=detail
        ),
    )


@transaction.atomic
def session_mark_lost(*, session_id: Any, detail: str, signal: int | None = None) -> None:
    _emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=SESSION_LIVE_STATUSES).update(
            status=SessionStatus.LOST, ended_at=timezone.now(), status_detail=detail, signal=signal
        ),
    )


@transaction.atomic
def run_claim(*, run_id: Any, supervisor_id: Any) -> bool:
    return _emit_if(
        FederatedRun,
        run_id,
        FederatedRun.objects.filter(pk=run_id, status=RunStatus.REQUESTED).update(
            status=RunStatus.STARTING, supervisor_id=supervisor_id
        ),
    )


@transaction.atomic
def run_mark_spawned(*, run_id: Any, pid: int, log_path: str, identity: dict[str, Any]) -> None:
    run = FederatedRun.objects.get(pk=run_id)
    config = {**run.config, "process": identity}
    _emit_if(
        FederatedRun,
        run_id,
        FederatedRun.objects.filter(pk=run_id, status=RunStatus.STARTING).update(
            pid=pid, started_at=timezone.now(), log_path=log_path, config=config, status_detail=""
        ),
    )


@transaction.atomic
def run_note(*, run_id: Any, detail: str) -> bool:
    """Say why a claimed run is not spawned yet (shown by the API, admin and dashboard)."""
    return _emit_if(
        FederatedRun,
        run_id,
        FederatedRun.objects.filter(pk=run_id, status=RunStatus.STARTING, pid__isnull=True).update(
            status_detail=detail[:500]
        ),
    )


@transaction.atomic
def run_set_flower_run_id(*, run_id: Any, flower_run_id: str) -> None:
    FederatedRun.objects.filter(pk=run_id, flower_run_id="").update(flower_run_id=flower_run_id)
    changed = FederatedRun.objects.filter(pk=run_id, status=RunStatus.STARTING).update(status=RunStatus.RUNNING)
    _emit_if(FederatedRun, run_id, changed)


@transaction.atomic
def run_mark_stopping(*, run_id: Any) -> bool:
    changed = FederatedRun.objects.filter(pk=run_id, status__in=(RunStatus.STARTING, RunStatus.RUNNING)).update(
        status=RunStatus.STOPPING
    )
    return _emit_if(FederatedRun, run_id, changed)


@transaction.atomic
def run_record_process_exit(*, run_id: Any, exit_code: int | None, signal: int | None) -> None:
    FederatedRun.objects.filter(pk=run_id).update(exit_code=exit_code, signal=signal)


@transaction.atomic
def run_mark_ended(*, run_id: Any, status: str, detail: str) -> bool:
    assert status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED)
    return _emit_if(
        FederatedRun,
        run_id,
        FederatedRun.objects.filter(pk=run_id, status__in=RUN_LIVE_STATUSES).update(
            status=status, ended_at=timezone.now(), status_detail=detail[:20000]
        ),
    )


def round_metric_record(
    *, run_id: Any, round: int, phase: str, aggregated: dict[str, Any], per_node: dict[str, Any], num_rounds: int | None
) -> None:
    """Store one round's metrics (idempotent per run/round/phase) and fold them into run.metrics."""
    with transaction.atomic():
        RoundMetric.objects.update_or_create(
            run_id=run_id, round=round, phase=phase, defaults={"aggregated": aggregated, "per_node": per_node}
        )
        run = FederatedRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return
        metrics = dict(run.metrics or {})
        by_phase = dict(metrics.get(phase, {}))
        by_phase[str(round)] = aggregated
        metrics[phase] = by_phase
        metrics["last_round"] = max(int(metrics.get("last_round", 0)), round)
        if num_rounds:
            metrics["num_rounds"] = num_rounds
        FederatedRun.objects.filter(pk=run_id).update(metrics=metrics)
        event_emit(
            project_id=run.project_id,
            type="run.round",
            payload={
                "run_id": str(run_id),
                "round": round,
                "phase": phase,
                "num_rounds": metrics.get("num_rounds"),
                "aggregated": aggregated,
                "per_node": per_node,
            },
        )


def run_record_artifact(*, run_id: Any, path: str) -> None:
    with transaction.atomic():
        run = FederatedRun.objects.select_for_update().filter(pk=run_id).first()
        if run is not None:
            FederatedRun.objects.filter(pk=run_id).update(metrics={**(run.metrics or {}), "artifact_path": path})


@dataclass(frozen=True)
class NewLogLine:
    stream: str
    source: str
    ts: datetime
    text: str


def log_lines_append(
    *, session_id: Any = None, run_id: Any = None, first_seq: int, lines: Iterable[NewLogLine], tail: str
) -> None:
    """Append a batch in one transaction; the caller owns the gap-free seq counter."""
    lines = list(lines)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # COPY is several times faster than a multi-row INSERT: this is the log hot path.
            with connection.cursor() as cursor:
                copy_sql = "COPY log_lines (session_id, run_id, seq, stream, source, ts, text) FROM STDIN"
                with cursor.cursor.copy(copy_sql) as copy:
                    for i, line in enumerate(lines):
                        copy.write_row(
                            (session_id, run_id, first_seq + i, line.stream, line.source, line.ts, line.text)
                        )
        else:
            rows = [
                LogLine(
                    session_id=session_id,
                    run_id=run_id,
                    seq=first_seq + i,
                    stream=line.stream,
                    source=line.source,
                    ts=line.ts,
                    text=line.text,
                )
                for i, line in enumerate(lines)
            ]
            LogLine.objects.bulk_create(rows, batch_size=500)
        # A bounded tail, rewritten once per batch (never per line).
        if session_id is not None:
            NodeSession.objects.filter(pk=session_id).update(log_stream=tail)
            group = doorbell.log_group("session", session_id)
        else:
            FederatedRun.objects.filter(pk=run_id).update(log_stream=tail)
            group = doorbell.log_group("run", run_id)
        transaction.on_commit(lambda: doorbell.ring(group))


def data_dirs_ensure() -> None:
    for path in (
        settings.DATA_DIR,
        settings.LOG_DIR,
        settings.FLWR_HOME_ROOT,
        settings.ARTIFACTS_DIR,
        settings.CERTIFICATES_DIR,
    ):
        Path(path).mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------- housekeeping
@dataclass(frozen=True)
class PruneReport:
    flower_dirs: list[Path]
    project_events: int
    supervisor_heartbeats: int


def history_prune(*, older_than: timedelta, dry_run: bool = False) -> PruneReport:
    """Remove what only grows and is never a record: Flower's scratch homes of ended processes,
    the app copies (one per run) in the homes of live ones while no run is live, project events
    (notifications; the rows they announce stay) and heartbeats of long-gone supervisors.

    Log lines, runs, sessions and round metrics are the record and are never pruned here.
    """
    if older_than < timedelta(hours=1):
        raise InvalidInput("older_than must be at least one hour", field="older_than")
    before = timezone.now() - older_than
    dirs = selectors.flower_homes_prunable(before=before) + selectors.flower_app_copies_prunable(before=before)
    events = selectors.project_events_before(before=before)
    heartbeats = selectors.supervisor_heartbeats_prunable(before=before)
    if dry_run:
        return PruneReport(flower_dirs=dirs, project_events=events.count(), supervisor_heartbeats=heartbeats.count())
    root = Path(settings.FLWR_HOME_ROOT).resolve()
    for path in dirs:
        if path.resolve().is_relative_to(root):  # never follow anything out of FedML's own directory
            shutil.rmtree(path, ignore_errors=True)
    with transaction.atomic():
        event_count = events.delete()[0]
        heartbeat_count = heartbeats.delete()[0]
    return PruneReport(flower_dirs=dirs, project_events=event_count, supervisor_heartbeats=heartbeat_count)
