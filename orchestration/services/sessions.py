"""Node sessions (one SuperLink or SuperNode process each): requests from the web side and the supervisor's transitions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestration import flower, selectors
from orchestration.errors import Conflict, InvalidInput, NotFound
from orchestration.models import (
    SESSION_LIVE_STATUSES,
    Node,
    NodeRole,
    NodeSession,
    SessionKind,
    SessionStatus,
)
from orchestration.services.common import invalid_input, supervisor_require_alive
from orchestration.services.events import event_emit, status_event_emit, status_event_emit_if, withdraw_unclaimed


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
        raise invalid_input(exc) from None
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
            status_event_emit(NodeSession, session.pk)
            return session
    except IntegrityError:
        raise Conflict("a SuperLink is already running for this coordinator") from None


@transaction.atomic
def session_withdraw(*, session: NodeSession) -> bool:
    """Delete a request no supervisor claimed (the caller answers 503); tell subscribers it is gone."""
    if not NodeSession.objects.filter(pk=session.pk, status=SessionStatus.REQUESTED).delete()[0]:
        return False
    event_emit(project_id=session.node.project_id, type="session.deleted", payload={"session_id": str(session.pk)})
    return True


def session_request_stop(*, session: NodeSession) -> NodeSession:
    """Ask the supervisor to stop a session. Works from any worker: the database carries it."""
    if not session.is_live:
        raise Conflict(f"session {session.id} is not running (status {session.status})")
    # Never claimed: withdraw it here, no process exists.
    if withdraw_unclaimed(NodeSession, session.pk, SessionStatus.REQUESTED, SessionStatus.STOPPED):
        return NodeSession.objects.get(pk=session.pk)
    NodeSession.objects.filter(pk=session.pk, stop_requested_at__isnull=True).update(stop_requested_at=timezone.now())
    return NodeSession.objects.get(pk=session.pk)


def superlink_request_stop(*, node: Node) -> NodeSession:
    session = selectors.session_live_superlink(project=node.project)
    if session is None:
        raise Conflict("no SuperLink is running")
    return session_request_stop(session=session)


def session_get_or_404(*, session_id: Any, node: Node | None = None) -> NodeSession:
    session = selectors.session_get(session_id=session_id)
    if session is None or (node is not None and session.node_id != node.pk):
        raise NotFound(f"session {session_id} not found", field="session_id")
    return session


@transaction.atomic
def session_claim(*, session_id: Any, supervisor_id: Any) -> bool:
    """Conditional update: exactly one supervisor wins a requested session."""
    return status_event_emit_if(
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
    status_event_emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status=SessionStatus.STARTING).update(
            status=SessionStatus.RUNNING, pid=pid, started_at=timezone.now(), log_path=log_path, runtime_config=config
        ),
    )


@transaction.atomic
def session_mark_stopping(*, session_id: Any) -> bool:
    return status_event_emit_if(
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
    status_event_emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=SESSION_LIVE_STATUSES).update(
            status=status, exit_code=exit_code, signal=signal, ended_at=timezone.now(), status_detail=detail
        ),
    )


@transaction.atomic
def session_mark_failed_to_start(*, session_id: Any, detail: str) -> None:
    status_event_emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=SESSION_LIVE_STATUSES).update(
            status=SessionStatus.FAILED, ended_at=timezone.now(), status_detail=detail
        ),
    )


@transaction.atomic
def session_mark_lost(*, session_id: Any, detail: str, signal: int | None = None) -> None:
    status_event_emit_if(
        NodeSession,
        session_id,
        NodeSession.objects.filter(pk=session_id, status__in=SESSION_LIVE_STATUSES).update(
            status=SessionStatus.LOST, ended_at=timezone.now(), status_detail=detail, signal=signal
        ),
    )
