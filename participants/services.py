"""SuperNode writes for a participant site. Session lifecycle is shared with the coordinator."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from core.errors import Conflict, InvalidInput
from orchestration import flower, ports, selectors
from orchestration.models import Node, NodeRole, NodeSession, SessionKind
from orchestration.runtime_config import RESTART_NEVER, SupernodeConfig, superlink_config
from orchestration.services import (
    bind_require_allowed,
    bind_require_free,
    host_require_allowed,
    invalid_input,
    port_choice_serialize,
    port_choose_free,
    port_policy_supernode,
    restart_policy_require_valid,
    session_event_emit,
    session_request_stop,
    supervisor_require_alive,
)
from participants import keys

# A SuperNode's runtime API serves the ClientApps it starts on this host: loopback unless asked.
DEFAULT_RUNTIME_HOST = "127.0.0.1"


def _project_superlink_address(node: Node) -> str:
    """Where a SuperNode dials when the request names no address: its project's SuperLink on this
    deployment, else (the default project only) the configured SUPERLINK_ADDRESS."""
    link = selectors.session_live_superlink(project=node.project)
    if link is not None:
        return superlink_config(link).connect_address
    if node.project.slug == settings.PROJECT_SLUG:
        return settings.SUPERLINK_ADDRESS
    raise InvalidInput(
        f"superlink_address is required: project {node.project.slug} has no SuperLink running here",
        field="superlink_address",
    )


@transaction.atomic
def supernode_request_start(
    *,
    node: Node,
    superlink_address: str | None = None,
    partition_id: int = 0,
    num_partitions: int = 1,
    clientappio_api_address: str | None = None,
    insecure: bool = True,
    certificates_path: str | None = None,
    extra_args: list[str] | None = None,
    restart_policy: str = RESTART_NEVER,
) -> NodeSession:
    """Record the intent to start one SuperNode for a participant node."""
    if node.role != NodeRole.PARTICIPANT:
        raise InvalidInput("only a participant node runs SuperNodes", field="node")
    restart_policy_require_valid(restart_policy=restart_policy)
    if not 0 <= partition_id < num_partitions:
        raise InvalidInput("partition_id must be between 0 and num_partitions - 1", field="partition_id")
    try:
        sl_host, sl_port = flower.parse_host_port(
            superlink_address or _project_superlink_address(node), field="superlink_address"
        )
        tls_path = flower.tls_certificates_path(insecure=insecure, certificates_path=certificates_path)
        root_cert = flower.root_certificate(tls_path, root=settings.CERTIFICATES_DIR) if tls_path else None
        args = flower.validate_extra_args(extra_args, allowed=flower.SUPERNODE_EXTRA_FLAGS)
        requested = (
            ports.Bind(*flower.parse_host_port(clientappio_api_address, field="clientappio_api_address"))
            if clientappio_api_address
            else None
        )
    except flower.FlowerArgError as exc:
        raise invalid_input(exc) from None
    # The port policy (orchestration.ports): where a participant's SuperNode may listen, before
    # anything is written. Its runtime API and any health server are the binds it chooses.
    policy = port_policy_supernode()
    health = ports.extra_args_binds(args)
    for bind in health:
        bind_require_allowed(bind=bind, field="extra_args", policy=policy)
    if requested is not None:
        bind_require_allowed(bind=requested, field="clientappio_api_address", policy=policy)
        if any(requested.clashes(bind) for bind in health):
            raise InvalidInput(
                "clientappio_api_address and --health-server-address are the same address", field="extra_args"
            )
    else:
        host_require_allowed(host=DEFAULT_RUNTIME_HOST, field="clientappio_api_address", policy=policy)
    supervisor_require_alive()
    # Serialise port choice per node, and with every other start request (PostgreSQL).
    Node.objects.select_for_update().filter(pk=node.pk).first()
    port_choice_serialize()
    live = selectors.session_live_binds()
    for bind in health:
        bind_require_free(bind=bind, field="extra_args", live=live)
    if requested is not None:
        bind_require_free(bind=requested, field="clientappio_api_address", live=live)
        host, port = requested.host, requested.port
    else:
        # The first port of the range that neither FedML nor another program on this host holds.
        host = DEFAULT_RUNTIME_HOST
        port = port_choose_free(
            host=host,
            field="clientappio_api_address",
            policy=policy,
            live=[*live, *health],
            avoid=(sl_port,),
            probe=True,
        )
    # With TLS, a node that has a SuperNode key authenticates with it (Flower's SuperNode auth
    # needs TLS; the key is harmless where the SuperLink does not ask for it).
    auth_key = keys.private_key_path(node) if not insecure else None
    runtime_config = SupernodeConfig(
        auth_private_key=str(auth_key) if auth_key else None,
        superlink_address=f"{sl_host}:{sl_port}",
        host=host,
        port=port,
        partition_id=partition_id,
        num_partitions=num_partitions,
        insecure=insecure,
        root_certificates=str(root_cert) if root_cert else None,
        extra_args=args,
        restart_policy=restart_policy,
    ).to_json()
    session = NodeSession.objects.create(node=node, kind=SessionKind.SUPERNODE, runtime_config=runtime_config)
    session_event_emit(session_id=session.pk)
    return session


def supernode_request_stop(*, node: Node, session_id: Any | None = None) -> list[NodeSession]:
    """Stop one SuperNode (by session id) or, without one, every live SuperNode of the node."""
    sessions = list(selectors.session_live_supernodes(node=node))
    if session_id is not None:
        sessions = [s for s in sessions if str(s.id) == str(session_id)]
        if not sessions:
            raise Conflict(f"SuperNode session {session_id} is not running on this node", field="session_id")
    if not sessions:
        raise Conflict("no SuperNode is running")
    return [session_request_stop(session=s) for s in sessions]
