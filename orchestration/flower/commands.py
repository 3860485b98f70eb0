"""Flower's command lines (argv lists, never a shell), the environment each child gets, and the CLI's config file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tomlkit

from orchestration.flower.app import atomic_write
from orchestration.flower.args import (
    ServerCertificates,
    toml_scalar,
)


def default_bin_dir() -> Path:
    """Flower's console scripts live beside the interpreter that runs FedML."""
    return Path(sys.executable).parent


def bin_path(name: str, bin_dir: Path | None = None) -> str:
    candidate = (bin_dir or default_bin_dir()) / name
    return str(candidate) if candidate.exists() else name


def child_env(*, flwr_home: Path, extra: dict[str, str] | None = None, bin_dir: Path | None = None) -> dict[str, str]:
    """An explicit environment for a Flower child: own FLWR_HOME, no phoning home."""
    venv_bin = str(bin_dir or default_bin_dir())
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {
        # SuperLink starts `flower-superexec` from PATH: the venv's bin comes first.
        "PATH": venv_bin + os.pathsep + path,
        "HOME": os.environ.get("HOME", str(flwr_home)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        # rich wraps at 80 columns when not on a terminal, which splits log lines.
        "COLUMNS": "500",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    env.update(extra or {})
    return env


def superlink_argv(
    *,
    bin_dir: Path | None = None,
    host: str,
    port: int,
    database: Path,
    insecure: bool,
    certificates: ServerCertificates | None,
    extra_args: list[str],
) -> list[str]:
    argv = [bin_path("flower-superlink", bin_dir), "--host", host, "--port", str(port)]
    argv += ["--database", str(database), "--disable-runtime-dependency-installation"]
    if insecure:
        argv.append("--insecure")
    elif certificates is not None:
        argv += ["--ssl-ca-certfile", str(certificates.ca_cert)]
        argv += ["--ssl-certfile", str(certificates.server_cert), "--ssl-keyfile", str(certificates.server_key)]
    return argv + extra_args


def node_config_arg(config: dict[str, int | float | str]) -> str:
    """Flower's `--node-config`: `key=value` pairs, each value TOML that Flower reads back unchanged."""
    return " ".join(f"{key}={toml_scalar(value)}" for key, value in config.items())


def supernode_argv(
    *,
    bin_dir: Path | None = None,
    superlink_address: str,
    host: str,
    port: int,
    node_config: dict[str, int | float | str],
    insecure: bool,
    root_certificates: Path | None,
    extra_args: list[str],
    auth_private_key: Path | None = None,
) -> list[str]:
    # Flower 1.42 rejects --clientappio-api-address: the runtime API is --host/--port.
    argv = [
        bin_path("flower-supernode", bin_dir),
        "--superlink",
        superlink_address,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if node_config:
        argv += ["--node-config", node_config_arg(node_config)]
    if insecure:
        argv.append("--insecure")
    elif root_certificates is not None:
        argv += ["--root-certificates", str(root_certificates)]
    if auth_private_key is not None:
        argv += ["--auth-supernode-private-key", str(auth_private_key)]
    return argv + extra_args


def run_argv(
    *,
    bin_dir: Path | None = None,
    app_dir: Path,
    connection: str,
    stream: bool,
    run_config: dict[str, int | float | bool | str],
    extra_args: list[str],
) -> list[str]:
    argv = [bin_path("flwr", bin_dir), "run", str(app_dir), connection]
    if stream:
        argv.append("--stream")
    for key, value in run_config.items():
        # ValueError for a value Flower would not read back (a row written before it was checked).
        argv += ["--run-config", f"{key}={toml_scalar(value)}"]
    return argv + extra_args


def stop_argv(*, bin_dir: Path | None = None, flower_run_id: str, connection: str) -> list[str]:
    return [bin_path("flwr", bin_dir), "stop", flower_run_id, connection]


def log_argv(*, bin_dir: Path | None = None, flower_run_id: str, connection: str) -> list[str]:
    """`flwr log --stream`: the run's log, replayed from its start, then followed until it ends."""
    return [bin_path("flwr", bin_dir), "log", flower_run_id, connection, "--stream"]


def ls_argv(*, bin_dir: Path | None = None, flower_run_id: str, connection: str) -> list[str]:
    return [bin_path("flwr", bin_dir), "ls", connection, "--run-id", flower_run_id, "--format", "json"]


def write_cli_config(
    *, flwr_home: Path, connection: str, address: str, insecure: bool, root_certificates: Path | None
) -> Path:
    """`flwr run APP CONNECTION` reads connections from $FLWR_HOME/config.toml, not pyproject."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    doc = tomlkit.document()
    superlink = tomlkit.table()
    superlink.add("default", connection)
    entry = tomlkit.table()
    entry.add("address", address)
    if insecure:
        entry.add("insecure", True)
    elif root_certificates is not None:
        entry.add("root-certificates", str(root_certificates))
    superlink.add(connection, entry)
    doc.add("superlink", superlink)
    path = flwr_home / "config.toml"
    atomic_write(path, tomlkit.dumps(doc))
    return path


def supernode_register_argv(*, public_key_file: Path, connection: str, bin_dir: Path | None = None) -> list[str]:
    return [bin_path("flwr", bin_dir), "supernode", "register", str(public_key_file), connection, "--format", "json"]


def supernode_unregister_argv(*, flower_node_id: str, connection: str, bin_dir: Path | None = None) -> list[str]:
    return [bin_path("flwr", bin_dir), "supernode", "unregister", flower_node_id, connection, "--format", "json"]
