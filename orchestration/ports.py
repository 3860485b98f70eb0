"""Which host:port a Flower process may listen on: the port policy. Pure: no Django, no sockets, no DNS.

Addresses are compared after normalisation, so `localhost:9400`, `127.0.0.1:9400` and
`[::ffff:127.0.0.1]:9400` are one listener: `localhost` is loopback (127.0.0.1 and ::1), IPv6 loses
its brackets and its IPv4-mapped form, and a wildcard overlaps every address it would take
(0.0.0.0 every IPv4 address; :: every address, as Linux's dual-stack sockets do). A host that is
neither an IP address nor `localhost` is compared by name, and is never an allowed bind host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address, ip_address

Address = IPv4Address | IPv6Address | str

ANY_V4 = IPv4Address("0.0.0.0")
ANY_V6 = IPv6Address("::")
LOOPBACK: frozenset[Address] = frozenset({IPv4Address("127.0.0.1"), IPv6Address("::1")})
FIRST_UNPRIVILEGED = 1024
# The one Flower flag in `extra_args` that opens a listener of its own.
HEALTH_FLAG = "--health-server-address"


def host_addresses(host: str) -> frozenset[Address]:
    """The addresses a listener bound to `host` takes."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return LOOPBACK
    try:
        address = ip_address(name)
    except ValueError:
        return frozenset({name})
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return frozenset({address.ipv4_mapped})
    return frozenset({address})


def _covers(wide: Address, other: Address) -> bool:
    if wide == ANY_V6:
        return True
    if wide == ANY_V4:
        return isinstance(other, str) or other.version == 4 or other == ANY_V6
    return False


def addresses_overlap(a: Address, b: Address) -> bool:
    """Whether listeners on `a` and `b` (same port) would collide."""
    return a == b or _covers(a, b) or _covers(b, a)


@dataclass(frozen=True)
class Bind:
    """One listener: the host as given (kept for argv and messages) and its port."""

    host: str
    port: int

    @cached_property
    def addresses(self) -> frozenset[Address]:
        return host_addresses(self.host)

    def clashes(self, other: Bind) -> bool:
        return self.port == other.port and any(addresses_overlap(a, b) for a in self.addresses for b in other.addresses)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_bind(value: str) -> Bind | None:
    """host:port from an address that was already validated (a stored row, checked extra_args)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit():
        return None
    return Bind(host, int(port))


def extra_args_binds(args: Iterable[str]) -> list[Bind]:
    """The listeners an allowlisted `extra_args` fragment opens (Flower's health server)."""
    items = list(args)
    binds: list[Bind] = []
    for i, item in enumerate(items):
        flag, eq, value = item.partition("=")
        if flag != HEALTH_FLAG:
            continue
        bind = parse_bind(value if eq else (items[i + 1] if i + 1 < len(items) else ""))
        if bind is not None:
            binds.append(bind)
    return binds


@dataclass(frozen=True)
class Ports:
    """An inclusive port range and where it comes from (named in refusals)."""

    first: int
    last: int
    source: str

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{span} ({self.source})"


@dataclass(frozen=True)
class PortPolicy:
    """Where one role (SuperLink, SuperNode) may listen: hosts, port ranges, ports kept for others."""

    role: str
    hosts: tuple[str, ...]
    hosts_source: str
    allowed: tuple[Ports, ...]
    reserved: tuple[Ports, ...] = ()

    @cached_property
    def allowed_addresses(self) -> frozenset[Address]:
        return frozenset().union(*(host_addresses(h) for h in self.hosts))

    def usable(self, port: int) -> bool:
        """A port this role may take: unprivileged, in an allowed range, reserved for no one else."""
        return (
            port >= FIRST_UNPRIVILEGED
            and any(port in p for p in self.allowed)
            and not any(port in p for p in self.reserved)
        )


class PortRefused(ValueError):
    """A bind the policy refuses (`in_use`: another live listener holds it). `field` names the input."""

    def __init__(self, field: str, message: str, *, in_use: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.in_use = in_use


def host_check(host: str, *, field: str, policy: PortPolicy) -> None:
    addresses = host_addresses(host)
    if addresses <= policy.allowed_addresses:
        return
    allowed = ", ".join(policy.hosts)
    if addresses & {ANY_V4, ANY_V6}:
        raise PortRefused(
            field,
            f"{field}: {host} is a wildcard address (every interface); a {policy.role} may listen on "
            f"{allowed} ({policy.hosts_source})",
        )
    raise PortRefused(field, f"{field}: a {policy.role} may listen on {allowed} ({policy.hosts_source}), not {host}")


def bind_check(bind: Bind, *, field: str, policy: PortPolicy) -> None:
    """Refuse a bind the policy does not allow, whatever else is running."""
    host_check(bind.host, field=field, policy=policy)
    if bind.port < FIRST_UNPRIVILEGED:
        raise PortRefused(field, f"{field}: port {bind.port} is privileged (below {FIRST_UNPRIVILEGED})")
    for ports in policy.reserved:
        if bind.port in ports:
            raise PortRefused(field, f"{field}: port {bind.port} is reserved for {ports}")
    if not any(bind.port in ports for ports in policy.allowed):
        ranges = " or ".join(str(p) for p in policy.allowed)
        raise PortRefused(field, f"{field}: port {bind.port} is outside the {policy.role} ports {ranges}")


def bind_check_free(bind: Bind, *, field: str, live: Iterable[Bind]) -> None:
    """Refuse a bind that collides with a live listener (compared after normalisation)."""
    for other in live:
        if bind.clashes(other):
            taken = "" if str(other) == str(bind) else f" (as {other})"
            raise PortRefused(field, f"{field}: {bind} is already used by a running FedML process{taken}", in_use=True)


def port_choose(
    host: str,
    *,
    policy: PortPolicy,
    live: Iterable[Bind],
    avoid: Iterable[int] = (),
    bindable: Callable[[str, int], bool] | None = None,
) -> int | None:
    """The first usable port for `host` that no live listener holds (and `bindable`, if given, accepts)."""
    taken = list(live)
    skip = set(avoid)
    for ports in policy.allowed:
        for port in range(ports.first, ports.last + 1):
            if port in skip or not policy.usable(port):
                continue
            if any(Bind(host, port).clashes(other) for other in taken):
                continue
            if bindable is not None and not bindable(host, port):
                continue
            return port
    return None
