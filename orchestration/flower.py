"""Everything FedML knows about Flower's command lines, files and output formats.

Flower 1.42 is pinned; its CLI is the stable interface we drive. Keep every Flower
quirk here so an upgrade touches one module.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
RUN_STARTED_RE = re.compile(r"Successfully started run (\d+)")
METRICS_PREFIX = "FEDML_METRICS "
ARTIFACT_PREFIX = "FEDML_ARTIFACT "
# re.ASCII everywhere input is checked: Python's \d also matches other scripts' digits ("９１９１").
HOST_PORT_RE = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(?P<port>\d{1,5})$", re.ASCII
)
CONFIG_KEY_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
CURRENT_RUN_ID_KEY = "current-run-id"
# Keys FedML sets itself; users may not override them through extra_args.
RESERVED_RUN_CONFIG_KEYS = frozenset({CURRENT_RUN_ID_KEY, "artifact-dir"})


class FlowerArgError(ValueError):
    """An argument for a Flower command is not acceptable. `field` names the input field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


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


def strip_ansi(text: str) -> str:
    """Remove terminal escapes and carriage returns; NUL (which PostgreSQL text refuses) becomes U+FFFD."""
    return ANSI_RE.sub("", text).replace("\r", "").replace("\x00", "\ufffd")


def parse_host_port(value: str, *, field: str) -> tuple[str, int]:
    match = HOST_PORT_RE.match(value.strip()) if isinstance(value, str) else None
    if not match or not 0 < int(match.group("port")) < 65536:
        raise FlowerArgError(field, f"{field} must be host:port (for example 127.0.0.1:9191), got {value!r}")
    return match.group("host"), int(match.group("port"))


# ---------------------------------------------------------------- extra_args
# Flag -> value shape. None: a switch. Only flags that make sense for FedML to pass
# through; everything FedML sets itself (--database, --host, TLS files) is absent.
SUPERLINK_EXTRA_FLAGS: dict[str, str | None] = {
    "--isolation": "choice:subprocess,process",
    "--log-rotation-interval-hours": "int",
    "--log-rotation-backup-count": "int",
    "--health-server-address": "address",
    "--enable-supernode-auth": None,
}
SUPERNODE_EXTRA_FLAGS: dict[str, str | None] = {
    "--max-retries": "int",
    "--max-wait-time": "float",
    "--isolation": "choice:subprocess,process",
    "--health-server-address": "address",
}
RUN_EXTRA_FLAGS: dict[str, str | None] = {
    "--run-config": "run-config",
}
_TOML_SCALAR = r'(?:"[^"\\\n]{0,200}"|-?\d{1,18}(?:\.\d{1,18})?(?:[eE][-+]?\d{1,3})?|true|false)'
# One `key=value` of a --run-config string, as Flower's parse_config_args reads it: pairs are
# separated by whitespace, and a quoted string value may itself hold spaces.
_RUN_CONFIG_PAIR = re.compile(rf"\s*(?P<key>[a-z][a-z0-9-]{{0,63}})=(?P<value>{_TOML_SCALAR})(?=\s|$)", re.ASCII)


def parse_run_config(value: str, *, flag: str = "--run-config", field: str = "extra_args") -> dict[str, str]:
    """The pairs of one --run-config string, values kept as TOML text (`3`, `"fedprox"`)."""
    pairs: dict[str, str] = {}
    text = value.rstrip()
    pos = 0
    while pos < len(text):
        match = _RUN_CONFIG_PAIR.match(text, pos)
        if match is None:
            bad = text[pos:].split(maxsplit=1)[0]
            raise FlowerArgError(field, f"{flag} takes key=value pairs with TOML scalar values, got {bad!r}")
        key = match.group("key")
        if key in RESERVED_RUN_CONFIG_KEYS:
            raise FlowerArgError(field, f"{flag} may not set {key!r}: FedML sets it")
        if key in pairs:
            raise FlowerArgError(field, f"{flag} sets {key!r} twice")
        pairs[key] = match.group("value")
        pos = match.end()
    if not pairs:
        raise FlowerArgError(field, f"{flag} needs at least one key=value pair")
    return pairs


def run_config_value(toml_value: str) -> Any:
    """A parsed value as Flower types it: int, float, bool or str."""
    return tomllib.loads(f"v = {toml_value}")["v"]


def _check_value(flag: str, shape: str, value: str, *, field: str) -> None:
    if shape == "int":
        if not re.fullmatch(r"\d{1,9}", value, re.ASCII):
            raise FlowerArgError(field, f"{flag} takes a non-negative integer, got {value!r}")
    elif shape == "float":
        if not re.fullmatch(r"\d{1,9}(\.\d{1,6})?", value, re.ASCII):
            raise FlowerArgError(field, f"{flag} takes a non-negative number, got {value!r}")
    elif shape == "address":
        parse_host_port(value, field=field)
    elif shape.startswith("choice:"):
        choices = shape.removeprefix("choice:").split(",")
        if value not in choices:
            raise FlowerArgError(field, f"{flag} takes one of {', '.join(choices)}, got {value!r}")
    else:  # pragma: no cover - a programming error in the tables above
        raise AssertionError(shape)


def validate_extra_args(args: Any, *, allowed: dict[str, str | None], field: str = "extra_args") -> list[str]:
    """Check `args` against an allowlist and return a normalised argv fragment."""
    if args is None:
        return []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise FlowerArgError(field, f"{field} must be a list of strings")
    if len(args) > 32:
        raise FlowerArgError(field, f"{field} may hold at most 32 items")
    out: list[str] = []
    seen: set[str] = set()
    run_config_keys: set[str] = set()
    i = 0
    while i < len(args):
        token = args[i]
        flag, eq, inline = token.partition("=")
        if flag not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise FlowerArgError(field, f"{field}: {flag!r} is not allowed here (allowed: {names})")
        # Flower would silently keep the last one; say so instead. --run-config may repeat
        # (Flower merges them), but not set one key twice.
        if flag in seen and allowed[flag] != "run-config":
            raise FlowerArgError(field, f"{field}: {flag} is given twice")
        seen.add(flag)
        shape = allowed[flag]
        if shape is None:
            if eq:
                raise FlowerArgError(field, f"{field}: {flag} takes no value")
            out.append(flag)
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(args):
                raise FlowerArgError(field, f"{field}: {flag} needs a value")
            value = args[i + 1]
            i += 2
        if len(value) > 1000 or "\x00" in value:
            raise FlowerArgError(field, f"{field}: the value of {flag} is too long or contains NUL")
        if shape == "run-config":
            keys = set(parse_run_config(value, flag=flag, field=field))
            if keys & run_config_keys:
                raise FlowerArgError(field, f"{flag} sets {sorted(keys & run_config_keys)[0]!r} twice")
            run_config_keys |= keys
        else:
            _check_value(flag, shape, value, field=field)
        out.extend([flag, value])
    return out


# ---------------------------------------------------------------- certificates
@dataclass(frozen=True)
class ServerCertificates:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def resolve_within(path: str, *, root: Path, field: str) -> Path:
    """Resolve a user-supplied path; it must exist inside `root` (no traversal, no symlink escape)."""
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > 500:
        raise FlowerArgError(field, f"{field} must be a path inside {root}")
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise FlowerArgError(field, f"{field} must be inside the certificates directory {root}")
    if not resolved.exists():
        raise FlowerArgError(field, f"{field}: {path!r} does not exist in {root}")
    return resolved


def server_certificates(path: str, *, root: Path, field: str = "certificates_path") -> ServerCertificates:
    directory = resolve_within(path, root=root, field=field)
    if not directory.is_dir():
        raise FlowerArgError(field, f"{field} must be a directory holding ca.crt, server.pem and server.key")
    certs = ServerCertificates(directory / "ca.crt", directory / "server.pem", directory / "server.key")
    for file in (certs.ca_cert, certs.server_cert, certs.server_key):
        if not file.is_file():
            raise FlowerArgError(field, f"{field}: {file.name} is missing in {directory}")
    return certs


def root_certificate(path: str, *, root: Path, field: str = "certificates_path") -> Path:
    resolved = resolve_within(path, root=root, field=field)
    if resolved.is_dir():
        resolved = resolved / "ca.crt"
    if not resolved.is_file():
        raise FlowerArgError(field, f"{field} must be a CA certificate file or a directory holding ca.crt")
    return resolved


# ---------------------------------------------------------------- command lines
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
    parts = []
    for key, value in config.items():
        parts.append(f"{key}={json.dumps(value) if isinstance(value, str) else value}")
    return " ".join(parts)


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
    run_config: dict[str, str],
    extra_args: list[str],
) -> list[str]:
    argv = [bin_path("flwr", bin_dir), "run", str(app_dir), connection]
    if stream:
        argv.append("--stream")
    for key, value in run_config.items():
        argv += ["--run-config", f"{key}={json.dumps(value)}"]
    return argv + extra_args


def stop_argv(*, bin_dir: Path | None = None, flower_run_id: str, connection: str) -> list[str]:
    return [bin_path("flwr", bin_dir), "stop", flower_run_id, connection]


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
    _atomic_write(path, tomlkit.dumps(doc))
    return path


# ---------------------------------------------------------------- output parsing
def parse_run_started(line: str) -> str | None:
    match = RUN_STARTED_RE.search(line)
    if match:
        return match.group(1)
    stripped = line.strip()
    if stripped.startswith("{") and '"run-id"' in stripped:
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        if data.get("success") and data.get("run-id") is not None:
            return str(data["run-id"])
    return None


def _parse_prefixed(line: str, prefix: str) -> dict[str, Any] | None:
    index = line.find(prefix)
    if index < 0:
        return None
    try:
        data = json.loads(line[index + len(prefix) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("v") == 1 else None


def parse_metrics(line: str) -> dict[str, Any] | None:
    """A ServerApp telemetry line: see flower_app/fedml_app/telemetry.py for the contract."""
    data = _parse_prefixed(line, METRICS_PREFIX)
    if not data:
        return None
    if data.get("phase") not in {"train", "evaluate"} or not isinstance(data.get("round"), int):
        return None
    if not isinstance(data.get("aggregated", {}), dict) or not isinstance(data.get("per_node", {}), dict):
        return None
    return data


def parse_artifact(line: str) -> dict[str, Any] | None:
    data = _parse_prefixed(line, ARTIFACT_PREFIX)
    return data if data and isinstance(data.get("path"), str) else None


@dataclass(frozen=True)
class FlowerRunStatus:
    status: str  # pending | starting | running | finished
    sub_status: str  # completed | failed | stopped | ""
    details: str

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def parse_cli_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object a `flwr ... --format json` command printed (it exits 0 even on errors:
    check `success`). stderr is captured with stdout, so skip log lines (which may hold braces)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^[ \t]*\{", stdout, re.MULTILINE):
        try:
            candidate, _ = decoder.raw_decode(stdout, match.end() - 1)
        except ValueError:
            continue
        if isinstance(candidate, dict) and "success" in candidate:
            return candidate
    return None


def parse_ls_json(stdout: str, *, flower_run_id: str) -> FlowerRunStatus | None:
    """Parse `flwr ls --run-id ID --format json`; None when Flower said nothing usable."""
    data = parse_cli_json(stdout)
    if data is None or not data.get("success", False):
        return None
    for run in data.get("runs", []):
        if str(run.get("run-id")) != flower_run_id:
            continue
        status, _, sub_status = str(run.get("status", "")).partition(":")
        return FlowerRunStatus(status=status, sub_status=sub_status, details=str(run.get("status-details", "") or ""))
    return None


# ---------------------------------------------------------------- SuperNode authentication
def supernode_register_argv(*, public_key_file: Path, connection: str, bin_dir: Path | None = None) -> list[str]:
    return [bin_path("flwr", bin_dir), "supernode", "register", str(public_key_file), connection, "--format", "json"]


def supernode_unregister_argv(*, flower_node_id: str, connection: str, bin_dir: Path | None = None) -> list[str]:
    return [bin_path("flwr", bin_dir), "supernode", "unregister", flower_node_id, connection, "--format", "json"]


def validate_supernode_public_key(text: Any, *, field: str = "public_key") -> str:
    """An OpenSSH public key on a NIST EC curve, as Flower's SuperNode authentication needs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(text, str) or not text.strip() or len(text) > 2000 or "\n" in text.strip():
        raise FlowerArgError(field, f"{field} must be one OpenSSH public key line (ecdsa-sha2-nistp256/384/521)")
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = serialization.load_ssh_public_key(text.strip().encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise FlowerArgError(field, f"{field} is not a valid OpenSSH public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {"secp256r1", "secp384r1", "secp521r1"}:
        raise FlowerArgError(field, f"{field} must be an EC key on a NIST curve (P-256, P-384 or P-521)")
    return text.strip()


# ---------------------------------------------------------------- the app's pyproject
def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_app_config(app_dir: Path) -> dict[str, Any]:
    doc = tomlkit.parse((app_dir / "pyproject.toml").read_text(encoding="utf-8"))
    return doc.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}).unwrap()


def set_current_run_id(app_dir: Path, value: str, *, only_if: str | None = None) -> bool:
    """Write `current-run-id` under [tool.flwr.app.config], keeping comments and layout.

    With `only_if`, change it only while it still holds that value (a newer run wins).
    """
    path = app_dir / "pyproject.toml"
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    config = doc["tool"]["flwr"]["app"]["config"]  # type: ignore[index]
    if only_if is not None and str(config.get(CURRENT_RUN_ID_KEY, "")) != only_if:
        return False
    config[CURRENT_RUN_ID_KEY] = value  # type: ignore[index]
    _atomic_write(path, tomlkit.dumps(doc))
    return True
