"""Flower's command lines (argv lists), the environment each child gets and the CLI's config file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from orchestration import flower

ROOT = Path(__file__).resolve().parent.parent


def _flag_value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, f"{flag} should appear exactly once in {argv}"
    return argv[argv.index(flag) + 1]


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


def test_run_and_node_config_values_reach_flower_unchanged(tmp_path):
    """What Flower's own parser (flwr.common.config.parse_config_args) makes of FedML's argv is the value
    FedML meant, characters beyond U+FFFF included (JSON would write them as surrogate pairs, which
    TOML refuses)."""
    from flwr.common.config import parse_config_args

    values = {"strategy": "fedprox 🌸 ü", "learning-rate": 1e-05, "min-nodes": 3, "use-gpu": False, "scale": 1e16}
    run = flower.run_argv(app_dir=tmp_path, connection="c", stream=True, run_config=values, extra_args=[])
    pairs = [run[i + 1] for i, item in enumerate(run) if item == "--run-config"]
    node = flower.supernode_argv(
        superlink_address="127.0.0.1:9191",
        host="127.0.0.1",
        port=9401,
        node_config=values,
        insecure=True,
        root_certificates=None,
        extra_args=[],
    )

    assert parse_config_args(pairs) == values
    assert parse_config_args([_flag_value(node, "--node-config")]) == values


def test_values_flower_would_not_read_back_are_never_written(tmp_path):
    for bad in ("a\x01b", "tab\there", 'say "hi"', "back\\slash", float("inf"), float("nan"), 2**63, [1]):
        with pytest.raises(ValueError):
            flower.run_argv(app_dir=tmp_path, connection="c", stream=True, run_config={"k": bad}, extra_args=[])
        with pytest.raises(ValueError):
            flower.node_config_arg({"k": bad})


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
