"""SuperNode writes for a participant site. Session lifecycle is shared with the coordinator."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from core.errors import Conflict, InvalidInput
from orchestration import flower, procs, selectors
from orchestration.models import Node, NodeRole, NodeSession, SessionKind
from orchestration.runtime_config import SupernodeConfig, superlink_config
from orchestration.services import invalid_input, session_event_emit, session_request_stop, supervisor_require_alive
from participants import keys


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
) -> NodeSession:
    """Record the intent to start one SuperNode for a participant node."""
    if node.role != NodeRole.PARTICIPANT:
        raise InvalidInput("only a participant node runs SuperNodes", field="node")
    if not 0 <= partition_id < num_partitions:
        raise InvalidInput("partition_id must be between 0 and num_partitions - 1", field="partition_id")
    try:
        sl_host, sl_port = flower.parse_host_port(
            superlink_address or _project_superlink_address(node), field="superlink_address"
        )
        tls_path = flower.tls_certificates_path(insecure=insecure, certificates_path=certificates_path)
        root_cert = flower.root_certificate(tls_path, root=settings.CERTIFICATES_DIR) if tls_path else None
        args = flower.validate_extra_args(extra_args, allowed=flower.SUPERNODE_EXTRA_FLAGS)
        if clientappio_api_address:
            host, port = flower.parse_host_port(clientappio_api_address, field="clientappio_api_address")
        else:
            host, port = "127.0.0.1", 0
    except flower.FlowerArgError as exc:
        raise invalid_input(exc) from None
    supervisor_require_alive()
    # Serialise port choice per node (SQLite serialises writers anyway).
    Node.objects.select_for_update().filter(pk=node.pk).first()
    used = selectors.ports_in_use(host=host)
    if port == 0:
        # The first port from the base that neither FedML nor another program on this host holds.
        port = settings.SUPERNODE_BASE_PORT
        while port in used or port == sl_port or not procs.port_bindable(host, port):
            port += 1
            if port > 65535:
                raise Conflict("no free port for the SuperNode's runtime API", field="clientappio_api_address")
    elif port in used:
        raise Conflict(
            f"clientappio_api_address: port {port} on {host} is already used by a running FedML process",
            field="clientappio_api_address",
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
