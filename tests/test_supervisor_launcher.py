"""FlowerLauncher: the rows the supervisor claims, turned into Flower's command lines and started
the one way FedML starts a child (own process group and FLWR_HOME, explicit env, argv only)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import tomlkit

from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from orchestration.runtime_config import ServerCertificatePaths, SuperlinkConfig, SupernodeConfig
from orchestration.supervisor import Command, FlowerLauncher, RunControl
from tests.supervisor_kit import use_own_dirs


@pytest.fixture
def launcher(settings, tmp_path: Path) -> FlowerLauncher:
    use_own_dirs(settings, tmp_path)
    settings.FLOWER_BIN_DIR = tmp_path / "bin"
    return FlowerLauncher()


def superlink(**config: object) -> NodeSession:
    defaults: dict[str, object] = {"host": "0.0.0.0", "port": 29091, "database": "/tmp/x/state.db"}
    return NodeSession(kind="superlink", runtime_config=SuperlinkConfig(**{**defaults, **config}).to_json())


def cli_config(home: Path) -> dict[str, object]:
    return tomlkit.parse((home / "config.toml").read_text()).unwrap()


def test_a_superlink_runs_with_its_address_database_and_extra_args(launcher, settings, tmp_path):
    session = superlink(database=str(tmp_path / "db" / "state.db"), extra_args=["--fleet-api-type", "grpc-rere"])

    command = launcher.session_command(session)

    assert command.argv[0] == "flower-superlink"  # not in FLOWER_BIN_DIR: found on PATH
    assert command.argv[1:] == [
        "--host",
        "0.0.0.0",
        "--port",
        "29091",
        "--database",
        str(tmp_path / "db" / "state.db"),
        "--disable-runtime-dependency-installation",
        "--insecure",
        "--fleet-api-type",
        "grpc-rere",
    ]
    assert (tmp_path / "db").is_dir()  # Flower does not create its database's directory
    assert command.flwr_home == settings.FLWR_HOME_ROOT / f"superlink-{session.pk}"


def test_a_tls_superlink_gets_its_certificates_instead_of_insecure(launcher, tmp_path):
    certs = ServerCertificatePaths(ca_cert="/c/ca.crt", server_cert="/c/server.pem", server_key="/c/server.key")
    session = superlink(insecure=False, certificates=certs, database=str(tmp_path / "state.db"))

    argv = launcher.session_command(session).argv

    assert "--insecure" not in argv
    assert argv[argv.index("--ssl-ca-certfile") + 1] == "/c/ca.crt"
    assert argv[argv.index("--ssl-certfile") + 1] == "/c/server.pem"
    assert argv[argv.index("--ssl-keyfile") + 1] == "/c/server.key"


def test_a_supernode_dials_its_superlink_with_its_partition_and_key(launcher, settings):
    config = SupernodeConfig(
        superlink_address="127.0.0.1:29092",
        host="127.0.0.1",
        port=29094,
        partition_id=1,
        num_partitions=3,
        insecure=False,
        root_certificates="/c/ca.crt",
        auth_private_key="/k/supernode",
    )
    session = NodeSession(kind="supernode", runtime_config=config.to_json())

    command = launcher.session_command(session)

    assert command.argv[0] == "flower-supernode"
    assert command.argv[1:7] == ["--superlink", "127.0.0.1:29092", "--host", "127.0.0.1", "--port", "29094"]
    assert command.argv[command.argv.index("--node-config") + 1] == "partition-id=1 num-partitions=3"
    assert command.argv[command.argv.index("--root-certificates") + 1] == "/c/ca.crt"
    assert command.argv[command.argv.index("--auth-supernode-private-key") + 1] == "/k/supernode"
    assert command.flwr_home == settings.FLWR_HOME_ROOT / f"supernode-{session.pk}"


def test_flwr_run_is_attached_names_the_run_and_knows_its_superlink(launcher, settings):
    run = FederatedRun(
        coordinator_session=superlink(),
        federation_name="production",
        config={"extra_args": ["--run-config", "num-server-rounds=2"]},
    )

    command = launcher.run_command(run)

    assert command.argv[:5] == ["flwr", "run", str(settings.FLOWER_APP_DIR), "production", "--stream"]
    assert f'current-run-id="{run.pk}"' in command.argv
    assert f'artifact-dir="{settings.ARTIFACTS_DIR}"' in command.argv
    assert command.argv[-2:] == ["--run-config", "num-server-rounds=2"]
    assert command.flwr_home == settings.FLWR_HOME_ROOT / f"run-{run.pk}" / "run"
    # A wildcard bind is dialled on loopback.
    assert cli_config(command.flwr_home)["superlink"] == {
        "default": "production",
        "production": {"address": "127.0.0.1:29091", "insecure": True},
    }


def test_flwr_stop_and_ls_each_get_a_home_of_their_own(launcher, settings):
    run = FederatedRun(coordinator_session=superlink(), federation_name="", flower_run_id="42")

    stop = launcher.run_control_command(run, RunControl.STOP)
    ls = launcher.run_control_command(run, RunControl.LS)

    assert stop.argv == ["flwr", "stop", "42", "production"]
    assert ls.argv == ["flwr", "ls", "production", "--run-id", "42", "--format", "json"]
    assert stop.flwr_home == settings.FLWR_HOME_ROOT / f"run-{run.pk}" / "stop"
    assert ls.flwr_home == settings.FLWR_HOME_ROOT / f"run-{run.pk}" / "ls"
    assert (ls.flwr_home / "config.toml").is_file()


def test_an_enrollment_registers_the_key_it_writes_or_unregisters_flowers_node(launcher, settings):
    link = superlink()
    register = NodeEnrollment(public_key="ecdsa-sha2-nistp384 AAAA", status="requested")
    revoke = NodeEnrollment(public_key="ecdsa-sha2-nistp384 AAAA", status="revoke_requested", flower_node_id="7")

    registering = launcher.enrollment_command(register, link)
    revoking = launcher.enrollment_command(revoke, link)

    key_file = settings.FLWR_HOME_ROOT / f"enrollment-{register.pk}" / "supernode.pub"
    assert registering.argv == ["flwr", "supernode", "register", str(key_file), "production", "--format", "json"]
    assert key_file.read_text() == "ecdsa-sha2-nistp384 AAAA\n"
    assert revoking.argv == ["flwr", "supernode", "unregister", "7", "production", "--format", "json"]


def test_start_runs_argv_without_a_shell_in_its_own_group_with_its_own_flwr_home(launcher, settings, tmp_path):
    script = "import os, sys; print(os.environ['FLWR_HOME'], os.environ['FLWR_TELEMETRY_ENABLED'], os.getcwd(),"
    script += " os.getpgid(0) == os.getpid(), sys.argv[1])"
    home = tmp_path / "home"
    settings.DATA_DIR.mkdir(parents=True)

    child = launcher.start(Command([sys.executable, "-c", script, "; echo no shell"], home), label="t", context="ctx")
    out = b""
    while chunk := os.read(child.stdout_fd, 4096):
        out += chunk
    os.close(child.stdout_fd)
    os.close(child.stderr_fd)
    assert child.popen.wait(timeout=30) == 0

    assert out.decode().split() == [str(home), "0", str(settings.DATA_DIR), "True", ";", "echo", "no", "shell"]
    assert home.is_dir()
    assert child.context == "ctx" and child.label == "t"
