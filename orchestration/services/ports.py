"""The port policy (orchestration.ports) with this deployment's settings and its live sessions.

Every start request checks the addresses it would listen on here, so the API, the admin and the
commands refuse the same binds: not allowed (400) or held by a live FedML process (409).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import connection

from core.errors import Conflict, InvalidInput
from orchestration import ports, procs

PORT_CHOICE_LOCK = 0x7E_D0_0001  # pg_advisory_xact_lock key: choosing or checking a listening port


def _address_port() -> int:
    return int(settings.SUPERLINK_ADDRESS.rsplit(":", 1)[1])


def _superlink_ranges() -> ports.Ports:
    first, last = settings.SUPERLINK_PORT_RANGE
    return ports.Ports(first, last, "FEDML_SUPERLINK_PORT_RANGE, the projects' SuperLinks")


def _default_superlink_port() -> ports.Ports:
    port = _address_port()
    return ports.Ports(port, port, "FEDML_SUPERLINK_ADDRESS, the default project's SuperLink")


def port_policy_superlink(*, default_project: bool) -> ports.PortPolicy:
    """A SuperLink listens in FEDML_SUPERLINK_PORT_RANGE; only the default project's may take
    FEDML_SUPERLINK_ADDRESS's port, so no other project can squat it."""
    default_port = _default_superlink_port()
    return ports.PortPolicy(
        role="SuperLink",
        hosts=tuple(settings.SUPERLINK_BIND_HOSTS),
        hosts_source="FEDML_SUPERLINK_BIND_HOSTS",
        allowed=(_superlink_ranges(), default_port) if default_project else (_superlink_ranges(),),
        reserved=() if default_project else (default_port,),
    )


def port_policy_supernode() -> ports.PortPolicy:
    """A SuperNode listens in FEDML_SUPERNODE_PORT_RANGE, never on a port kept for a SuperLink."""
    first, last = settings.SUPERNODE_PORT_RANGE
    return ports.PortPolicy(
        role="SuperNode",
        hosts=tuple(settings.SUPERNODE_BIND_HOSTS),
        hosts_source="FEDML_SUPERNODE_BIND_HOSTS",
        allowed=(ports.Ports(first, last, "FEDML_SUPERNODE_PORT_RANGE"),),
        reserved=(_default_superlink_port(), _superlink_ranges()),
    )


def _refused(exc: ports.PortRefused) -> InvalidInput | Conflict:
    return (Conflict if exc.in_use else InvalidInput)(exc.message, field=exc.field)


def bind_require_allowed(
    *, bind: ports.Bind, field: str, policy: ports.PortPolicy, default_from: str | None = None
) -> None:
    """400 naming `field` for a bind the policy refuses (before anything is written). `default_from`
    names the setting the address came from when the request gave none."""
    try:
        ports.bind_check(bind, field=field, policy=policy)
    except ports.PortRefused as exc:
        if default_from:
            exc.message += f" (the default {field}, from {default_from})"
        raise _refused(exc) from None


def host_require_allowed(*, host: str, field: str, policy: ports.PortPolicy) -> None:
    try:
        ports.host_check(host, field=field, policy=policy)
    except ports.PortRefused as exc:
        raise _refused(exc) from None


def bind_require_free(*, bind: ports.Bind, field: str, live: Iterable[ports.Bind]) -> None:
    """409 naming `field` when a live FedML listener holds the same address (after normalisation)."""
    try:
        ports.bind_check_free(bind, field=field, live=live)
    except ports.PortRefused as exc:
        raise _refused(exc) from None


def port_choose_free(
    *,
    host: str,
    field: str,
    policy: ports.PortPolicy,
    live: Iterable[ports.Bind],
    avoid: Iterable[int] = (),
    probe: bool = False,
) -> int:
    """The first port the policy allows that no live FedML process holds; with `probe`, that no
    other program on this host holds either. 409 naming `field` when there is none."""
    port = ports.port_choose(
        host, policy=policy, live=live, avoid=avoid, bindable=procs.port_bindable if probe else None
    )
    if port is None:
        ranges = " or ".join(str(p) for p in policy.allowed)
        raise Conflict(f"{field}: every {policy.role} port of {ranges} on {host} is in use", field=field)
    return port


def port_choice_serialize() -> None:
    """Two start requests at once must not take the same port: one at a time chooses (PostgreSQL
    advisory lock until the transaction ends; SQLite already serialises writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PORT_CHOICE_LOCK])
