"""The port policy (orchestration/ports.py): where a SuperLink or SuperNode may listen, compared
after normalisation. Pure functions: no database, no sockets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from orchestration.ports import (
    LOOPBACK,
    Bind,
    PortPolicy,
    PortRefused,
    Ports,
    bind_check,
    bind_check_free,
    extra_args_binds,
    host_addresses,
    port_choose,
)

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _policy(hosts: tuple[str, ...] = LOOPBACK_HOSTS, reserved: tuple[Ports, ...] = ()) -> PortPolicy:
    return PortPolicy(
        role="SuperNode",
        hosts=hosts,
        hosts_source="FEDML_SUPERNODE_BIND_HOSTS",
        allowed=(Ports(9400, 9699, "FEDML_SUPERNODE_PORT_RANGE"),),
        reserved=reserved,
    )


def _refusal(bind: Bind, policy: PortPolicy) -> PortRefused:
    with pytest.raises(PortRefused) as refused:
        bind_check(bind, field="clientappio_api_address", policy=policy)
    assert refused.value.field == "clientappio_api_address"
    assert refused.value.message.startswith("clientappio_api_address: ")
    assert not refused.value.in_use
    return refused.value


# ---------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", LOOPBACK),
        ("LocalHost", LOOPBACK),
        ("127.0.0.1", {IPv4Address("127.0.0.1")}),
        ("[::1]", {IPv6Address("::1")}),
        ("::1", {IPv6Address("::1")}),
        ("[::ffff:127.0.0.1]", {IPv4Address("127.0.0.1")}),
        ("[0:0:0:0:0:0:0:1]", {IPv6Address("::1")}),
        ("[::]", {IPv6Address("::")}),
        ("Example.ORG", {"example.org"}),
    ],
)
def test_hosts_normalise_to_the_addresses_a_listener_takes(host: str, expected: set[object]) -> None:
    assert host_addresses(host) == frozenset(expected)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("localhost", 9400), ("127.0.0.1", 9400)),
        (("localhost", 9400), ("[::1]", 9400)),
        (("[::ffff:127.0.0.1]", 9400), ("127.0.0.1", 9400)),
        (("0.0.0.0", 9400), ("127.0.0.1", 9400)),
        (("[::]", 9400), ("127.0.0.1", 9400)),
        (("[::]", 9400), ("0.0.0.0", 9400)),
        (("0.0.0.0", 9400), ("coordinator.example.org", 9400)),
    ],
)
def test_listeners_on_the_same_port_and_overlapping_addresses_clash(a: tuple[str, int], b: tuple[str, int]) -> None:
    assert Bind(*a).clashes(Bind(*b))
    assert Bind(*b).clashes(Bind(*a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("127.0.0.1", 9400), ("127.0.0.1", 9401)),
        (("127.0.0.1", 9400), ("[::1]", 9400)),
        (("127.0.0.1", 9400), ("127.0.0.2", 9400)),
        (("0.0.0.0", 9400), ("[::1]", 9400)),
    ],
)
def test_listeners_on_other_ports_or_disjoint_addresses_do_not_clash(a: tuple[str, int], b: tuple[str, int]) -> None:
    assert not Bind(*a).clashes(Bind(*b))


# ---------------------------------------------------------------- what the policy refuses
@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "[0:0:0:0:0:0:0:0]", "[::ffff:0.0.0.0]"])
def test_a_wildcard_bind_is_refused_naming_the_setting(host: str) -> None:
    refusal = _refusal(Bind(host, 9400), _policy())
    assert "wildcard" in refusal.message and "FEDML_SUPERNODE_BIND_HOSTS" in refusal.message


def test_a_wildcard_bind_is_allowed_when_the_setting_lists_it() -> None:
    bind_check(Bind("0.0.0.0", 9400), field="listen_address", policy=_policy(hosts=("0.0.0.0",)))


@pytest.mark.parametrize("host", ["10.0.0.5", "0", "127.1", "2130706433", "0x7f000001", "example.org", "127.0.0.2"])
def test_a_host_that_is_not_an_allowed_address_is_refused(host: str) -> None:
    refusal = _refusal(Bind(host, 9400), _policy())
    assert host in refusal.message and "127.0.0.1, ::1, localhost" in refusal.message


def test_localhost_is_refused_when_only_one_of_its_loopback_addresses_is_allowed() -> None:
    _refusal(Bind("localhost", 9400), _policy(hosts=("127.0.0.1",)))
    bind_check(Bind("127.0.0.1", 9400), field="clientappio_api_address", policy=_policy(hosts=("127.0.0.1",)))


@pytest.mark.parametrize("port", [1, 22, 443, 1023])
def test_a_privileged_port_is_refused_even_inside_an_allowed_range(port: int) -> None:
    policy = PortPolicy(
        role="SuperLink", hosts=LOOPBACK_HOSTS, hosts_source="X", allowed=(Ports(1, 65535, "everything"),)
    )
    refusal = _refusal(Bind("127.0.0.1", port), policy)
    assert "privileged" in refusal.message


def test_a_port_reserved_for_a_superlink_is_refused_naming_why() -> None:
    policy = _policy(reserved=(Ports(9500, 9500, "FEDML_SUPERLINK_ADDRESS, the default project's SuperLink"),))
    refusal = _refusal(Bind("127.0.0.1", 9500), policy)
    assert "reserved" in refusal.message and "FEDML_SUPERLINK_ADDRESS" in refusal.message


@pytest.mark.parametrize("port", [9094, 9399, 9700, 65535])
def test_a_port_outside_the_roles_range_is_refused_naming_the_range(port: int) -> None:
    refusal = _refusal(Bind("127.0.0.1", port), _policy())
    assert "outside" in refusal.message and "9400-9699 (FEDML_SUPERNODE_PORT_RANGE)" in refusal.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
def test_an_allowed_host_and_port_pass(host: str) -> None:
    bind_check(Bind(host, 9400), field="clientappio_api_address", policy=_policy())
    bind_check(Bind(host, 9699), field="clientappio_api_address", policy=_policy())


# ---------------------------------------------------------------- live listeners
def test_a_bind_held_by_a_live_listener_under_another_spelling_is_in_use() -> None:
    with pytest.raises(PortRefused) as refused:
        bind_check_free(Bind("localhost", 9400), field="clientappio_api_address", live=[Bind("127.0.0.1", 9400)])
    assert refused.value.in_use and refused.value.field == "clientappio_api_address"
    assert "127.0.0.1:9400" in refused.value.message


def test_a_bind_beside_live_listeners_is_free() -> None:
    bind_check_free(Bind("[::1]", 9400), field="f", live=[Bind("127.0.0.1", 9400), Bind("localhost", 9401)])


def test_port_choose_skips_reserved_live_avoided_and_unbindable_ports() -> None:
    policy = _policy(reserved=(Ports(9400, 9400, "a SuperLink"),))
    live = [Bind("localhost", 9401), Bind("0.0.0.0", 9402)]

    port = port_choose("127.0.0.1", policy=policy, live=live, avoid=(9403,), bindable=lambda _h, p: p != 9404)

    assert port == 9405


def test_port_choose_finds_nothing_in_a_full_range() -> None:
    policy = PortPolicy(role="SuperLink", hosts=LOOPBACK_HOSTS, hosts_source="X", allowed=(Ports(9200, 9201, "r"),))
    assert port_choose("127.0.0.1", policy=policy, live=[Bind("[::]", 9200), Bind("localhost", 9201)]) is None


def test_the_health_server_address_in_extra_args_is_a_listener() -> None:
    assert extra_args_binds(["--max-retries", "3", "--health-server-address", "[::1]:9450"]) == [Bind("[::1]", 9450)]
    assert extra_args_binds(["--health-server-address=127.0.0.1:9451"]) == [Bind("127.0.0.1", 9451)]
    assert extra_args_binds(["--isolation", "process"]) == []
