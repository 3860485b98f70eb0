"""Checking what users pass to Flower: host:port, allowlisted flags, --run-config, certificate paths, SuperNode keys."""

from __future__ import annotations

import math
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.flower.app import RESERVED_RUN_CONFIG_KEYS

HOST_PORT_RE = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(?P<port>\d{1,5})$", re.ASCII
)


CONFIG_KEY_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


class FlowerArgError(ValueError):
    """An argument for a Flower command is not acceptable. `field` names the input field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_host_port(value: str, *, field: str) -> tuple[str, int]:
    match = HOST_PORT_RE.match(value.strip()) if isinstance(value, str) else None
    if not match or not 0 < int(match.group("port")) < 65536:
        raise FlowerArgError(field, f"{field} must be host:port (for example 127.0.0.1:9191), got {value!r}")
    return match.group("host"), int(match.group("port"))


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


_RUN_CONFIG_PAIR = re.compile(rf"\s*(?P<key>[a-z][a-z0-9-]{{0,63}})=(?P<value>{_TOML_SCALAR})(?=\s|$)", re.ASCII)


def _control_character(text: str) -> str | None:
    """The first control character in `text` (tab, newline and DEL included), or None."""
    return next((c for c in text if unicodedata.category(c) in ("Cc", "Cs")), None)


def toml_scalar(value: Any) -> str:
    """`value` as TOML text for Flower's `--run-config` / `--node-config`, such that Flower reads back
    exactly `value`; ValueError (saying why) for anything that would not survive the trip.

    Strings are written as TOML basic strings without escapes: Flower finds a quoted value with
    `"[^"]*"`, so a quote or backslash could not be escaped, and JSON's `\\uXXXX` surrogate pairs
    (characters beyond U+FFFF) are not TOML at all."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} does not fit a 64-bit integer")
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        text = repr(value)
    elif isinstance(value, str):
        bad = _control_character(value)
        if bad is not None:
            raise ValueError(f"holds the control character U+{ord(bad):04X}")
        if '"' in value or "\\" in value:
            raise ValueError("holds a quote or a backslash, which Flower cannot read back")
        text = f'"{value}"'
    else:
        raise ValueError(f"is a {type(value).__name__}, not a string, number or boolean")
    back = tomllib.loads(f"v = {text}")["v"]
    if type(back) is not type(value) or back != value:  # pragma: no cover - a gap in the checks above
        raise ValueError(f"{text} does not read back as {value!r}")
    return text


def run_config_value(toml_value: str) -> Any:
    """A --run-config value as Flower types it (int, float, bool or str); ValueError, saying why,
    unless it is one TOML scalar that reaches Flower unchanged."""
    bad = _control_character(toml_value)
    if bad is not None:  # a newline would also start a second TOML key below
        raise ValueError(f"{toml_value!r} holds the control character U+{ord(bad):04X}")
    try:
        value = tomllib.loads(f"v = {toml_value}")["v"]
    except tomllib.TOMLDecodeError:
        raise ValueError(f"{toml_value!r} is not a TOML value (quote strings)") from None
    try:
        toml_scalar(value)
    except ValueError as exc:
        raise ValueError(f"{toml_value!r}: {exc}") from None
    return value


def parse_run_config(value: str, *, flag: str = "--run-config", field: str = "extra_args") -> dict[str, str]:
    """The pairs of one --run-config string, values kept as TOML text (`3`, `"fedprox"`), each
    checked to reach Flower unchanged."""
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
        try:
            run_config_value(match.group("value"))
        except ValueError as exc:
            raise FlowerArgError(field, f"{flag}: {key}: {exc}") from None
        pairs[key] = match.group("value")
        pos = match.end()
    if not pairs:
        raise FlowerArgError(field, f"{flag} needs at least one key=value pair")
    return pairs


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


@dataclass(frozen=True)
class ServerCertificates:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def resolve_within(path: str, *, root: Path, field: str) -> Path:
    """Resolve a user-supplied path; it must exist inside `root` (no traversal, no symlink escape)."""
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > 500:
        raise FlowerArgError(
            field, f"{field} must be a path inside the certificates directory (FEDML_CERTIFICATES_DIR)"
        )
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise FlowerArgError(field, f"{field} must be inside the certificates directory (FEDML_CERTIFICATES_DIR)")
    if not resolved.exists():
        raise FlowerArgError(field, f"{field}: {path!r} does not exist in the certificates directory")
    return resolved


def server_certificates(path: str, *, root: Path, field: str = "certificates_path") -> ServerCertificates:
    directory = resolve_within(path, root=root, field=field)
    if not directory.is_dir():
        raise FlowerArgError(field, f"{field} must be a directory holding ca.crt, server.pem and server.key")
    certs = ServerCertificates(directory / "ca.crt", directory / "server.pem", directory / "server.key")
    for file in (certs.ca_cert, certs.server_cert, certs.server_key):
        if not file.is_file():
            raise FlowerArgError(field, f"{field}: {file.name} is missing in {path!r}")
    return certs


def root_certificate(path: str, *, root: Path, field: str = "certificates_path") -> Path:
    resolved = resolve_within(path, root=root, field=field)
    if resolved.is_dir():
        resolved = resolved / "ca.crt"
    if not resolved.is_file():
        raise FlowerArgError(field, f"{field} must be a CA certificate file or a directory holding ca.crt")
    return resolved


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


def tls_certificates_path(*, insecure: bool, certificates_path: str | None) -> str | None:
    """The certificates path a TLS process needs, or None without TLS; a path with insecure is refused."""
    if not insecure:
        if not certificates_path:
            raise FlowerArgError("certificates_path", "certificates_path is required when insecure is false")
        return certificates_path
    if certificates_path:
        raise FlowerArgError("certificates_path", "certificates_path is only used when insecure is false")
    return None
