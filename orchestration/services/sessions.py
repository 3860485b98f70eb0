"""Node sessions (one SuperLink or SuperNode process each): requests from the web side and the supervisor's transitions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, InvalidInput
from orchestration import flower, ports, selectors
from orchestration.models import (
    Node,
    NodeRole,
    NodeSession,
    SessionKind,
    SessionStatus,
)
from orchestration.runtime_config import RESTART_NEVER, ServerCertificatePaths, SuperlinkConfig
from orchestration.services.common import invalid_input, restart_policy_require_valid, supervisor_require_alive
from orchestration.services.events import event_emit, session_event_emit
from orchestration.services.ports import (
    bind_require_allowed,
    bind_require_free,
    host_require_allowed,
    port_choice_serialize,
    port_choose_free,
    port_policy_superlink,
)
from orchestration.services.transitions import session_transition

WITHDRAWN_DETAIL = "withdrawn before a supervisor started it"


@transaction.atomic
def superlink_request_start(
    *,
    node: Node,
    insecure: bool = True,
    certificates_path: str | None = None,
    listen_address: str | None = None,
    extra_args: list[str] | None = None,
    restart_policy: str = RESTART_NEVER,
) -> NodeSession:
    """Record the intent to start the SuperLink; the supervisor spawns it."""
    if node.role != NodeRole.COORDINATOR:
        raise InvalidInput("only a coordinator node runs a SuperLink", field="node")
    restart_policy_require_valid(restart_policy=restart_policy)
    default_project = node.project.slug == settings.PROJECT_SLUG
    try:
        host, port = flower.parse_host_port(listen_address or settings.SUPERLINK_ADDRESS, field="listen_address")
        tls_path = flower.tls_certificates_path(insecure=insecure, certificates_path=certificates_path)
        certificates = flower.server_certificates(tls_path, root=settings.CERTIFICATES_DIR) if tls_path else None
        args = flower.validate_extra_args(extra_args, allowed=flower.SUPERLINK_EXTRA_FLAGS)
    except flower.FlowerArgError as exc:
        raise invalid_input(exc) from None
    # The port policy (orchestration.ports): where this SuperLink may listen, before anything is written.
    policy = port_policy_superlink(default_project=default_project)
    chosen = bool(listen_address) or default_project  # else the first free port of the range
    health = ports.extra_args_binds(args)
    for bind in health:
        bind_require_allowed(bind=bind, field="extra_args", policy=policy)
    if chosen:
        bind_require_allowed(
            bind=ports.Bind(host, port),
            field="listen_address",
            policy=policy,
            default_from=None if listen_address else "FEDML_SUPERLINK_ADDRESS",
        )
        if any(ports.Bind(host, port).clashes(bind) for bind in health):
            raise InvalidInput("listen_address and --health-server-address are the same address", field="extra_args")
    else:
        host_require_allowed(host=host, field="listen_address", policy=policy)
    supervisor_require_alive()
    Node.objects.select_for_update().filter(pk=node.pk).first()
    existing = selectors.session_live_superlink(project=node.project)
    if existing is not None:
        raise Conflict(
            f"a SuperLink is already {existing.status} (session {existing.id})", extra={"session_id": str(existing.id)}
        )
    port_choice_serialize()
    live = selectors.session_live_binds()
    for bind in health:
        bind_require_free(bind=bind, field="extra_args", live=live)
    if chosen:
        bind_require_free(bind=ports.Bind(host, port), field="listen_address", live=live)
    else:
        port = port_choose_free(host=host, field="listen_address", policy=policy, live=[*live, *health])
    # Each project's SuperLink keeps its own state; the default project keeps the historical path.
    state_dir = settings.DATA_DIR / "superlink" / ("" if default_project else str(node.project_id))
    runtime_config = SuperlinkConfig(
        host=host,
        port=port,
        insecure=insecure,
        certificates=None
        if certificates is None
        else ServerCertificatePaths(
            ca_cert=str(certificates.ca_cert),
            server_cert=str(certificates.server_cert),
            server_key=str(certificates.server_key),
        ),
        extra_args=args,
        database=str(state_dir / "state.db"),
        restart_policy=restart_policy,
    ).to_json()
    try:
        with transaction.atomic():
            session = NodeSession.objects.create(node=node, kind=SessionKind.SUPERLINK, runtime_config=runtime_config)
            session_event_emit(session_id=session.pk)
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


def session_request_stop(*, session: NodeSession, reason: str = "") -> NodeSession:
    """Ask the supervisor to stop a session. Works from any worker: the database carries it.

    `reason`, when given, becomes the status detail (the supervisor's own shutdown says why).
    """
    if not session.is_live:
        raise Conflict(f"session {session.id} is not running (status {session.status})")
    # Never claimed: withdraw it here, no process exists.
    if session_transition(
        session_id=session.pk, name="withdraw", ended_at=timezone.now(), status_detail=WITHDRAWN_DETAIL
    ):
        return NodeSession.objects.get(pk=session.pk)
    changes: dict[str, Any] = {"stop_requested_at": timezone.now()}
    if reason:
        changes["status_detail"] = reason
    NodeSession.objects.live().filter(pk=session.pk, stop_requested_at__isnull=True).update(**changes)
    return NodeSession.objects.get(pk=session.pk)


def superlink_request_stop(*, node: Node) -> NodeSession:
    session = selectors.session_live_superlink(project=node.project)
    if session is None:
        raise Conflict("no SuperLink is running")
    return session_request_stop(session=session)


def session_claim(*, session_id: Any, supervisor_id: Any) -> bool:
    """Exactly one supervisor wins a requested session."""
    return session_transition(session_id=session_id, name="claim", supervisor_id=supervisor_id)


@transaction.atomic
def session_mark_running(*, session_id: Any, pid: int, log_path: str, identity: dict[str, Any]) -> bool:
    session = NodeSession.objects.get(pk=session_id)
    config = {**session.runtime_config, "process": identity}
    return session_transition(
        session_id=session_id,
        name="spawned",
        pid=pid,
        started_at=timezone.now(),
        log_path=log_path,
        runtime_config=config,
    )


def session_mark_restarting(*, session_id: Any, exit_code: int | None, signal: int | None, detail: str) -> bool:
    """The process exited by itself and its restart policy starts it again; False if a stop came first."""
    return session_transition(
        session_id=session_id,
        name="restart",
        where={"stop_requested_at__isnull": True},
        pid=None,
        exit_code=exit_code,
        signal=signal,
        status_detail=detail,
    )


def session_mark_stopping(*, session_id: Any) -> bool:
    return session_transition(session_id=session_id, name="stop")


def session_mark_ended(
    *, session_id: Any, exit_code: int | None, signal: int | None, stop_requested: bool, detail: str = ""
) -> bool:
    """The process ended: `stopped` if someone asked, `exited` on code 0 by itself, `failed` otherwise."""
    if stop_requested:
        name = "end_stopped"
    elif exit_code == 0:
        name = "end_exited"
    else:
        name = "end_failed"
    return session_transition(
        session_id=session_id,
        name=name,
        exit_code=exit_code,
        signal=signal,
        ended_at=timezone.now(),
        status_detail=detail,
    )


def session_mark_failed_to_start(*, session_id: Any, detail: str) -> bool:
    return session_transition(session_id=session_id, name="end_failed", ended_at=timezone.now(), status_detail=detail)


def session_mark_lost(*, session_id: Any, detail: str, signal: int | None = None) -> bool:
    return session_transition(
        session_id=session_id, name="lose", ended_at=timezone.now(), status_detail=detail, signal=signal
    )
