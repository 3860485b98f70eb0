"""The Flower adapter: command lines, argument allowlists, paths, output parsers and files."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from orchestration import flower
from orchestration.flower import app as flower_app_module

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers
def _cert_dir(root: Path, name: str = "server") -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    for file in ("ca.crt", "server.pem", "server.key"):
        (directory / file).write_text(f"-- {file} --\n")
    return directory


def _flag_value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, f"{flag} should appear exactly once in {argv}"
    return argv[argv.index(flag) + 1]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A copy of the real app's pyproject, with no run id (a live supervisor may have set one)."""
    target = tmp_path / "flower_app"
    target.mkdir()
    text = (ROOT / "flower_app" / "pyproject.toml").read_text(encoding="utf-8")
    text, count = re.subn(r'(?m)^current-run-id = "[^"]*"', 'current-run-id = ""', text)
    assert count == 1
    (target / "pyproject.toml").write_text(text, encoding="utf-8")
    return target


# ---------------------------------------------------------------- superlink argv
def test_superlink_argv_insecure_uses_database_and_disables_dependency_installation(tmp_path):
    database = tmp_path / "superlink" / "state.db"
    argv = flower.superlink_argv(
        host="127.0.0.1", port=9191, database=database, insecure=True, certificates=None, extra_args=[]
    )

    assert Path(argv[0]).name == "flower-superlink"
    assert _flag_value(argv, "--host") == "127.0.0.1"
    assert _flag_value(argv, "--port") == "9191"
    assert _flag_value(argv, "--database") == str(database)
    assert "--disable-runtime-dependency-installation" in argv
    assert "--insecure" in argv
    assert not any(a.startswith("--ssl-") for a in argv)


def test_superlink_argv_with_certificates_passes_tls_files_and_not_insecure(tmp_path):
    certs = flower.ServerCertificates(tmp_path / "ca.crt", tmp_path / "server.pem", tmp_path / "server.key")
    argv = flower.superlink_argv(
        host="0.0.0.0", port=9200, database=tmp_path / "db", insecure=False, certificates=certs, extra_args=[]
    )

    assert "--insecure" not in argv
    assert _flag_value(argv, "--ssl-ca-certfile") == str(tmp_path / "ca.crt")
    assert _flag_value(argv, "--ssl-certfile") == str(tmp_path / "server.pem")
    assert _flag_value(argv, "--ssl-keyfile") == str(tmp_path / "server.key")
    assert "--disable-runtime-dependency-installation" in argv


def test_superlink_argv_appends_validated_extra_args_last(tmp_path):
    extra = flower.validate_extra_args(["--isolation", "process"], allowed=flower.SUPERLINK_EXTRA_FLAGS)
    argv = flower.superlink_argv(
        host="127.0.0.1", port=9191, database=tmp_path / "db", insecure=True, certificates=None, extra_args=extra
    )

    assert argv[-2:] == ["--isolation", "process"]


# ---------------------------------------------------------------- supernode argv
def test_supernode_argv_maps_clientappio_address_to_host_and_port():
    argv = flower.supernode_argv(
        superlink_address="10.0.0.5:9092",
        host="127.0.0.1",
        port=9401,
        node_config={"partition-id": 1, "num-partitions": 3},
        insecure=True,
        root_certificates=None,
        extra_args=[],
    )

    assert Path(argv[0]).name == "flower-supernode"
    assert _flag_value(argv, "--superlink") == "10.0.0.5:9092"
    assert _flag_value(argv, "--host") == "127.0.0.1"
    assert _flag_value(argv, "--port") == "9401"
    assert not any(a.startswith("--clientappio-api-address") for a in argv)
    assert "--insecure" in argv
    assert "--root-certificates" not in argv


def test_supernode_argv_node_config_is_one_space_separated_string():
    argv = flower.supernode_argv(
        superlink_address="127.0.0.1:9191",
        host="127.0.0.1",
        port=9401,
        node_config={"partition-id": 0, "num-partitions": 2, "site": "clinic a"},
        insecure=True,
        root_certificates=None,
        extra_args=[],
    )

    assert _flag_value(argv, "--node-config") == 'partition-id=0 num-partitions=2 site="clinic a"'


def test_supernode_argv_with_root_certificates_is_not_insecure(tmp_path):
    argv = flower.supernode_argv(
        superlink_address="127.0.0.1:9191",
        host="127.0.0.1",
        port=9401,
        node_config={},
        insecure=False,
        root_certificates=tmp_path / "ca.crt",
        extra_args=["--max-retries", "3"],
    )

    assert "--insecure" not in argv
    assert "--node-config" not in argv
    assert _flag_value(argv, "--root-certificates") == str(tmp_path / "ca.crt")
    assert argv[-2:] == ["--max-retries", "3"]


def test_run_argv_quotes_run_config_values_as_toml_strings(tmp_path):
    argv = flower.run_argv(
        app_dir=tmp_path, connection="production", stream=True, run_config={"current-run-id": "abc"}, extra_args=[]
    )

    assert argv[1:4] == ["run", str(tmp_path), "production"]
    assert "--stream" in argv
    assert _flag_value(argv, "--run-config") == 'current-run-id="abc"'


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
    directory = _cert_dir(root)

    assert flower.resolve_within("server", root=root, field="certificates_path") == directory.resolve()
    assert flower.resolve_within(str(directory), root=root, field="certificates_path") == directory.resolve()


@pytest.mark.parametrize("path", ["../outside", "server/../../outside", "/etc", "/etc/passwd"])
def test_resolve_within_refuses_traversal_and_absolute_paths_outside_the_root(tmp_path, path):
    root = tmp_path / "certs"
    _cert_dir(root)
    _cert_dir(tmp_path, "outside")

    with pytest.raises(flower.FlowerArgError) as info:
        flower.resolve_within(path, root=root, field="certificates_path")

    assert info.value.field == "certificates_path"
    assert "inside" in info.value.message


def test_resolve_within_refuses_a_symlink_that_escapes_the_root(tmp_path):
    root = tmp_path / "certs"
    root.mkdir()
    outside = _cert_dir(tmp_path, "outside")
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
    directory = _cert_dir(root)

    certs = flower.server_certificates("server", root=root)

    assert certs.ca_cert == directory.resolve() / "ca.crt"
    assert certs.server_cert == directory.resolve() / "server.pem"
    assert certs.server_key == directory.resolve() / "server.key"


def test_server_certificates_names_a_missing_file(tmp_path):
    root = tmp_path / "certs"
    directory = _cert_dir(root)
    (directory / "server.key").unlink()

    with pytest.raises(flower.FlowerArgError, match=r"server\.key is missing"):
        flower.server_certificates("server", root=root)


def test_root_certificate_accepts_a_directory_holding_ca_crt_or_the_file(tmp_path):
    root = tmp_path / "certs"
    directory = _cert_dir(root)

    assert flower.root_certificate("server", root=root) == directory.resolve() / "ca.crt"
    assert flower.root_certificate("server/ca.crt", root=root) == directory.resolve() / "ca.crt"
    with pytest.raises(flower.FlowerArgError, match="inside"):
        flower.root_certificate("../../etc/hosts", root=root)


# ---------------------------------------------------------------- output parsing
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Successfully started run 123", "123"),
        ("\x1b[92mINFO\x1b[0m :   🎊 Successfully started run 8723456789012345678", "8723456789012345678"),
        ('{"success": true, "run-id": 123}', "123"),
        ('  {"success": true, "run-id": 42}  ', "42"),
    ],
)
def test_parse_run_started_reads_plain_and_json_forms(line, expected):
    assert flower.parse_run_started(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Starting run",
        '{"success": false, "run-id": 123}',
        '{"success": true, "run-id": null}',
        '{"success": true, "run-id": 12',
        "Successfully started run abc",
        "",
    ],
)
def test_parse_run_started_ignores_other_lines(line):
    assert flower.parse_run_started(line) is None


def test_parse_metrics_reads_a_versioned_telemetry_line():
    payload = {"v": 1, "phase": "train", "round": 2, "aggregated": {"loss": 0.5}, "per_node": {"1": {"loss": 0.4}}}
    line = "INFO :  " + flower.METRICS_PREFIX + json.dumps(payload)

    assert flower.parse_metrics(line) == payload


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 2, "phase": "train", "round": 1},
        {"v": 1, "phase": "predict", "round": 1},
        {"v": 1, "phase": "train", "round": "1"},
        {"v": 1, "phase": "evaluate", "round": 1, "aggregated": [1]},
        {"v": 1, "phase": "evaluate", "round": 1, "per_node": "x"},
    ],
)
def test_parse_metrics_refuses_payloads_outside_the_contract(payload):
    assert flower.parse_metrics(flower.METRICS_PREFIX + json.dumps(payload)) is None


def test_parse_metrics_ignores_unrelated_and_broken_lines():
    assert flower.parse_metrics("round 1 loss 0.5") is None
    assert flower.parse_metrics(flower.METRICS_PREFIX + "{not json") is None
    assert flower.parse_metrics(flower.METRICS_PREFIX + "[1, 2]") is None


def test_parse_artifact_requires_a_string_path():
    good = flower.ARTIFACT_PREFIX + json.dumps({"v": 1, "path": "/data/model.pt", "fedml_run_id": "x"})

    assert flower.parse_artifact(good) == {"v": 1, "path": "/data/model.pt", "fedml_run_id": "x"}
    assert flower.parse_artifact(flower.ARTIFACT_PREFIX + json.dumps({"v": 1, "path": 3})) is None
    assert flower.parse_artifact(flower.ARTIFACT_PREFIX + json.dumps({"path": "/x"})) is None
    assert flower.parse_artifact(flower.METRICS_PREFIX + json.dumps({"v": 1, "path": "/x"})) is None


LS_SAMPLE = {
    "success": True,
    "runs": [
        {
            "run-id": 42,
            "fab-id": "fedml/fedml-flower-app",
            "fab-name": "fedml-flower-app",
            "fab-version": "1.0.0",
            "fab-hash": "abc123",
            "status": "finished:completed",
            "status-details": "N/A",
            "elapsed": "00:00:12",
            "pending-at": "2025-01-01 10:00:00Z",
            "starting-at": "2025-01-01 10:00:01Z",
            "running-at": "2025-01-01 10:00:02Z",
            "finished-at": "2025-01-01 10:00:14Z",
        }
    ],
}


# `flwr ls --format json` prints through rich's print_json: indented over many lines.
LS_TEXT = json.dumps(LS_SAMPLE, indent=2)


@pytest.mark.parametrize("stdout", [LS_TEXT, json.dumps(LS_SAMPLE)])
def test_parse_ls_json_reads_status_sub_status_and_details(stdout):
    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result == flower.FlowerRunStatus(status="finished", sub_status="completed", details="N/A")
    assert result.finished


def test_parse_ls_json_skips_plain_lines_before_the_json():
    stdout = "Loading project configuration...\nSuccess\n" + LS_TEXT + "\n"

    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result is not None
    assert (result.status, result.sub_status) == ("finished", "completed")


def test_parse_ls_json_skips_a_preceding_log_line_that_contains_braces():
    # The supervisor captures stderr with stdout: a warning mentioning a dict comes first.
    stdout = "WARNING :   Unknown keys in config: {'foo'}\n" + LS_TEXT

    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result is not None
    assert result.sub_status == "completed"


def test_parse_ls_json_skips_a_trailing_line_after_the_json():
    # stderr arrives interleaved with stdout in the captured lines.
    stdout = LS_TEXT + "\nWARNING :   connection closed\n"

    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result is not None
    assert result.sub_status == "completed"


def test_parse_ls_json_running_run_is_not_finished():
    sample = {"success": True, "runs": [{**LS_SAMPLE["runs"][0], "status": "running", "status-details": ""}]}

    result = flower.parse_ls_json(json.dumps(sample, indent=2), flower_run_id="42")

    assert result == flower.FlowerRunStatus(status="running", sub_status="", details="")
    assert not result.finished


@pytest.mark.parametrize(
    "stdout",
    [
        "",
        "no json here",
        '{"success": false, "error-message": "no such run"}',
        '{"success": true, "runs": [',
        json.dumps({"success": True, "runs": [{**LS_SAMPLE["runs"][0], "run-id": 43}]}),
    ],
)
def test_parse_ls_json_returns_none_when_flower_said_nothing_usable(stdout):
    assert flower.parse_ls_json(stdout, flower_run_id="42") is None


def test_strip_ansi_removes_colour_codes_osc_sequences_and_carriage_returns():
    text = "\x1b[92mINFO\x1b[0m : \x1b[1;31mround\x1b[22m 1\r\x1b]0;title\x07 done\x1b[2K"

    assert flower.strip_ansi(text) == "INFO : round 1 done"
    assert flower.strip_ansi("plain [brackets] stay") == "plain [brackets] stay"


# ---------------------------------------------------------------- the app's pyproject
def test_set_current_run_id_changes_only_that_line_and_keeps_every_other_byte(app_dir):
    path = app_dir / "pyproject.toml"
    before = path.read_bytes().splitlines(keepends=True)

    assert flower.set_current_run_id(app_dir, "1b4e28ba-2fa1-11d2-883f-0016d3cca427") is True

    after = path.read_bytes().splitlines(keepends=True)
    assert len(after) == len(before)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert len(changed) == 1
    old, new = changed[0]
    assert old.startswith(b'current-run-id = ""')
    assert new.startswith(b'current-run-id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"')
    assert new.rstrip().endswith(b"# FedML run UUID, written by FedML before each run")
    assert flower.read_app_config(app_dir)["current-run-id"] == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert flower.read_app_config(app_dir)["num-server-rounds"] == 5


def test_set_current_run_id_only_if_changes_the_value_only_while_it_still_holds_it(app_dir):
    assert flower.set_current_run_id(app_dir, "run-a") is True

    assert flower.set_current_run_id(app_dir, "", only_if="run-b") is False
    assert flower.read_app_config(app_dir)["current-run-id"] == "run-a"

    assert flower.set_current_run_id(app_dir, "", only_if="run-a") is True
    assert flower.read_app_config(app_dir)["current-run-id"] == ""


def test_set_current_run_id_round_trip_restores_the_original_file(app_dir):
    path = app_dir / "pyproject.toml"
    original = path.read_bytes()

    flower.set_current_run_id(app_dir, "run-a")
    flower.set_current_run_id(app_dir, "", only_if="run-a")

    assert path.read_bytes() == original


def test_set_current_run_id_is_atomic_leaves_no_temp_file_and_keeps_the_mode(app_dir):
    path = app_dir / "pyproject.toml"
    os.chmod(path, 0o640)
    inode_before = path.stat().st_ino

    flower.set_current_run_id(app_dir, "run-a")

    assert sorted(p.name for p in app_dir.iterdir()) == ["pyproject.toml"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # Replaced, not rewritten in place: a reader sees the old or the new file, never half.
    assert path.stat().st_ino != inode_before


def test_set_current_run_id_leaves_the_file_untouched_and_no_temp_file_when_writing_fails(app_dir, monkeypatch):
    path = app_dir / "pyproject.toml"
    original = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(flower_app_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        flower.set_current_run_id(app_dir, "run-a")

    assert path.read_bytes() == original
    assert sorted(p.name for p in app_dir.iterdir()) == ["pyproject.toml"]


def test_write_cli_config_writes_the_connection_for_flwr(tmp_path):
    import tomllib

    home = tmp_path / "home"
    path = flower.write_cli_config(
        flwr_home=home, connection="production", address="127.0.0.1:9193", insecure=True, root_certificates=None
    )

    data = tomllib.loads(path.read_text())
    assert path == home / "config.toml"
    assert data == {
        "superlink": {"default": "production", "production": {"address": "127.0.0.1:9193", "insecure": True}}
    }


# ---------------------------------------------------------------- child environment
def test_child_env_isolates_flower_and_puts_the_venv_first_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")

    env = flower.child_env(flwr_home=tmp_path / "home", extra={"EXTRA": "1"})

    assert env["FLWR_HOME"] == str(tmp_path / "home")
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["PATH"].split(os.pathsep)[1:] == ["/usr/bin", "/bin"]
    assert env["EXTRA"] == "1"
    assert "SECRET_TOKEN" not in env
    assert "DATABASE_URL" not in env


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
