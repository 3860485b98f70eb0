"""Checking what users pass to Flower: allowlisted flags, --run-config, host:port, paths and certificates."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration import flower
from tests.factories import fake_server_certificates

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- validate_extra_args
def test_validate_extra_args_none_and_empty_give_no_arguments():
    assert flower.validate_extra_args(None, allowed=flower.SUPERLINK_EXTRA_FLAGS) == []
    assert flower.validate_extra_args([], allowed=flower.SUPERLINK_EXTRA_FLAGS) == []


def test_validate_extra_args_accepts_allowed_flags_with_separate_values():
    args = [
        "--isolation",
        "subprocess",
        "--log-rotation-interval-hours",
        "24",
        "--health-server-address",
        "127.0.0.1:9099",
        "--enable-supernode-auth",
    ]

    assert flower.validate_extra_args(args, allowed=flower.SUPERLINK_EXTRA_FLAGS) == args


def test_validate_extra_args_normalises_flag_equals_value_form():
    out = flower.validate_extra_args(["--max-retries=5", "--max-wait-time=2.5"], allowed=flower.SUPERNODE_EXTRA_FLAGS)

    assert out == ["--max-retries", "5", "--max-wait-time", "2.5"]


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["--database", "/etc/passwd"], flower.SUPERLINK_EXTRA_FLAGS),
        (["--database=/etc/passwd"], flower.SUPERLINK_EXTRA_FLAGS),
        (["--host", "0.0.0.0"], flower.SUPERLINK_EXTRA_FLAGS),
        (["--ssl-keyfile", "/tmp/key"], flower.SUPERLINK_EXTRA_FLAGS),
        (["--insecure"], flower.SUPERNODE_EXTRA_FLAGS),
        (["--clientappio-api-address", "127.0.0.1:9094"], flower.SUPERNODE_EXTRA_FLAGS),
        (["--enable-supernode-auth"], flower.SUPERNODE_EXTRA_FLAGS),
        (["--federation-config", "address='x'"], flower.RUN_EXTRA_FLAGS),
        (["process"], flower.SUPERLINK_EXTRA_FLAGS),
    ],
)
def test_validate_extra_args_refuses_flags_not_on_the_allowlist(args, allowed):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(args, allowed=allowed)

    assert info.value.field == "extra_args"
    assert "not allowed" in info.value.message


@pytest.mark.parametrize(
    "args",
    [
        ["--isolation", "thread"],
        ["--isolation=subprocess;rm -rf /"],
        ["--isolation", "subprocess && id"],
        ["--log-rotation-interval-hours", "-1"],
        ["--log-rotation-interval-hours", "24h"],
        ["--log-rotation-interval-hours", "1`id`"],
        ["--log-rotation-backup-count", "$(id)"],
        ["--health-server-address", "127.0.0.1"],
        ["--health-server-address", "127.0.0.1:9099|nc -l 1"],
        ["--health-server-address", "host:70000"],
        ["--enable-supernode-auth=true"],
        ["--isolation"],
    ],
)
def test_validate_extra_args_refuses_values_of_the_wrong_shape_or_with_shell_metacharacters(args):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(args, allowed=flower.SUPERLINK_EXTRA_FLAGS)

    assert info.value.field == "extra_args"


@pytest.mark.parametrize("value", ["1.5.2", "-3", "1e3", "2.5;id"])
def test_validate_extra_args_float_shape_refuses_non_numbers(value):
    with pytest.raises(flower.FlowerArgError):
        flower.validate_extra_args(["--max-wait-time", value], allowed=flower.SUPERNODE_EXTRA_FLAGS)


@pytest.mark.parametrize("args", ["--isolation process", {"--isolation": "process"}, ["--isolation", 3]])
def test_validate_extra_args_requires_a_list_of_strings(args):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(args, allowed=flower.SUPERLINK_EXTRA_FLAGS)

    assert info.value.field == "extra_args"


def test_validate_extra_args_refuses_more_than_32_items():
    args = ["--enable-supernode-auth"] * 33

    with pytest.raises(flower.FlowerArgError, match="at most 32"):
        flower.validate_extra_args(args, allowed=flower.SUPERLINK_EXTRA_FLAGS)


def test_validate_extra_args_refuses_nul_bytes_in_values():
    with pytest.raises(flower.FlowerArgError, match="NUL"):
        flower.validate_extra_args(["--run-config", 'name="a\x00b"'], allowed=flower.RUN_EXTRA_FLAGS)


def test_validate_extra_args_reports_the_given_field_name():
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(["--nope"], allowed=flower.RUN_EXTRA_FLAGS, field="run_args")

    assert info.value.field == "run_args"


def test_validate_extra_args_run_config_accepts_toml_scalar_pairs():
    value = 'num-server-rounds=3 learning-rate=0.01 strategy="fedprox" use-gpu=false scale=-1.5e-3'

    out = flower.validate_extra_args(["--run-config", value], allowed=flower.RUN_EXTRA_FLAGS)

    assert out == ["--run-config", value]


def test_run_config_string_values_may_hold_spaces_as_in_flowers_own_parser():
    from flwr.common.config import parse_config_args

    value = 'label="night run 2" num-server-rounds=3  fraction-train=0.5'

    assert flower.parse_run_config(value) == {
        "label": '"night run 2"',
        "num-server-rounds": "3",
        "fraction-train": "0.5",
    }
    assert flower.validate_extra_args(["--run-config", value], allowed=flower.RUN_EXTRA_FLAGS) == [
        "--run-config",
        value,
    ]
    # What Flower itself makes of the same string.
    assert parse_config_args([value]) == {"label": "night run 2", "num-server-rounds": 3, "fraction-train": 0.5}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("num-server-rounds=3 num-server-rounds=4", "sets 'num-server-rounds' twice"),
        ("", "needs at least one key=value pair"),
        ("   ", "needs at least one key=value pair"),
        ('a="x"b=2', "got 'a=\"x\"b=2'"),
    ],
)
def test_run_config_refuses_duplicate_keys_empty_strings_and_glued_pairs(value, message):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(["--run-config", value], allowed=flower.RUN_EXTRA_FLAGS)

    assert info.value.field == "extra_args"
    assert message in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        'current-run-id="00000000-0000-0000-0000-000000000000"',
        'num-server-rounds=3 current-run-id="x"',
        'artifact-dir="/etc"',
    ],
)
def test_validate_extra_args_run_config_refuses_reserved_keys(value):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(["--run-config", value], allowed=flower.RUN_EXTRA_FLAGS)

    assert info.value.field == "extra_args"
    assert "FedML sets it" in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        "num-server-rounds=$(id)",
        "strategy=fedavg",
        "Strategy=1",
        "lr=0.1;id",
        'name="a\\"b"',
        "num-server-rounds",
        "x=[1,2]",
    ],
)
def test_validate_extra_args_run_config_refuses_non_scalar_or_malformed_pairs(value):
    with pytest.raises(flower.FlowerArgError):
        flower.validate_extra_args(["--run-config", value], allowed=flower.RUN_EXTRA_FLAGS)


# ---------------------------------------------------------------- parse_host_port
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9191", ("127.0.0.1", 9191)),
        ("superlink.example.org:443", ("superlink.example.org", 443)),
        ("[::1]:9092", ("[::1]", 9092)),
        (" localhost:1 ", ("localhost", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_host_port_splits_valid_addresses(value, expected):
    assert flower.parse_host_port(value, field="listen_address") == expected


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",
        ":9191",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "host:port",
        "a b:1",
        "-bad:1",
        "http://h:1",
        "",
        None,
        9191,
    ],
)
def test_parse_host_port_refuses_anything_else_naming_the_field(value):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.parse_host_port(value, field="superlink_address")

    assert info.value.field == "superlink_address"


# ---------------------------------------------------------------- paths and certificates
def test_resolve_within_accepts_relative_and_absolute_paths_inside_the_root(tmp_path):
    root = tmp_path / "certs"
    directory = fake_server_certificates(root)

    assert flower.resolve_within("server", root=root, field="certificates_path") == directory.resolve()
    assert flower.resolve_within(str(directory), root=root, field="certificates_path") == directory.resolve()


@pytest.mark.parametrize("path", ["../outside", "server/../../outside", "/etc", "/etc/passwd"])
def test_resolve_within_refuses_traversal_and_absolute_paths_outside_the_root(tmp_path, path):
    root = tmp_path / "certs"
    fake_server_certificates(root)
    fake_server_certificates(tmp_path, "outside")

    with pytest.raises(flower.FlowerArgError) as info:
        flower.resolve_within(path, root=root, field="certificates_path")

    assert info.value.field == "certificates_path"
    assert "inside" in info.value.message


def test_resolve_within_refuses_a_symlink_that_escapes_the_root(tmp_path):
    root = tmp_path / "certs"
    root.mkdir()
    outside = fake_server_certificates(tmp_path, "outside")
    (root / "innocent").symlink_to(outside, target_is_directory=True)

    with pytest.raises(flower.FlowerArgError, match="inside"):
        flower.resolve_within("innocent", root=root, field="certificates_path")
    with pytest.raises(flower.FlowerArgError, match="inside"):
        flower.server_certificates("innocent", root=root)


def test_resolve_within_refuses_missing_paths_and_bad_values(tmp_path):
    root = tmp_path / "certs"
    root.mkdir()

    for bad in ["missing", "", "a\x00b", "x" * 501]:
        with pytest.raises(flower.FlowerArgError) as info:
            flower.resolve_within(bad, root=root, field="certificates_path")
        assert info.value.field == "certificates_path"


def test_server_certificates_finds_the_three_files(tmp_path):
    root = tmp_path / "certs"
    directory = fake_server_certificates(root)

    certs = flower.server_certificates("server", root=root)

    assert certs.ca_cert == directory.resolve() / "ca.crt"
    assert certs.server_cert == directory.resolve() / "server.pem"
    assert certs.server_key == directory.resolve() / "server.key"


def test_server_certificates_names_a_missing_file(tmp_path):
    root = tmp_path / "certs"
    directory = fake_server_certificates(root)
    (directory / "server.key").unlink()

    with pytest.raises(flower.FlowerArgError, match=r"server\.key is missing"):
        flower.server_certificates("server", root=root)


def test_root_certificate_accepts_a_directory_holding_ca_crt_or_the_file(tmp_path):
    root = tmp_path / "certs"
    directory = fake_server_certificates(root)

    assert flower.root_certificate("server", root=root) == directory.resolve() / "ca.crt"
    assert flower.root_certificate("server/ca.crt", root=root) == directory.resolve() / "ca.crt"
    with pytest.raises(flower.FlowerArgError, match="inside"):
        flower.root_certificate("../../etc/hosts", root=root)


@pytest.mark.parametrize(
    ("args", "allowed", "message"),
    [
        (["--max-retries", "1", "--max-retries", "2"], flower.SUPERNODE_EXTRA_FLAGS, "--max-retries is given twice"),
        (["--isolation=subprocess", "--isolation", "process"], flower.SUPERNODE_EXTRA_FLAGS, "given twice"),
        (["--run-config", "a=1", "--run-config=b=2 a=3"], flower.RUN_EXTRA_FLAGS, "sets 'a' twice"),
    ],
)
def test_validate_extra_args_refuses_a_flag_or_run_config_key_given_twice(args, allowed, message):
    with pytest.raises(flower.FlowerArgError) as info:
        flower.validate_extra_args(args, allowed=allowed)

    assert info.value.field == "extra_args"
    assert message in info.value.message


def test_validate_extra_args_accepts_run_config_split_over_several_flags_as_flower_merges_them():
    args = ["--run-config", "num-server-rounds=2", '--run-config=strategy="fedprox"']

    assert flower.validate_extra_args(args, allowed=flower.RUN_EXTRA_FLAGS) == [
        "--run-config",
        "num-server-rounds=2",
        "--run-config",
        'strategy="fedprox"',
    ]


def test_tls_certificates_path_is_required_with_tls_and_refused_without_it():
    assert flower.tls_certificates_path(insecure=False, certificates_path="superlink") == "superlink"
    assert flower.tls_certificates_path(insecure=True, certificates_path=None) is None
    for insecure, path in ((False, None), (False, ""), (True, "superlink")):
        with pytest.raises(flower.FlowerArgError) as refused:
            flower.tls_certificates_path(insecure=insecure, certificates_path=path)
        assert refused.value.field == "certificates_path"
