"""Reading typed values from the environment for fedml_site/settings.py: each fails loudly
(ImproperlyConfigured naming the variable) on a value it cannot use."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$", re.ASCII)


def boolean(name: str, default: bool) -> bool:
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def integer(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def number(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def address(name: str, default: str) -> str:
    raw = env.str(name, default=default).strip()
    match = _HOST_PORT.match(raw)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ImproperlyConfigured(f"{name} must be host:port, got {raw!r}")
    return raw


def path_value(name: str, default: Path) -> Path:
    raw = env.str(name, default=str(default)).strip()
    if not raw:
        raise ImproperlyConfigured(f"{name} must be a path, got an empty value")
    return Path(raw).expanduser().resolve()


def port_range(name: str, default: str) -> tuple[int, int]:
    raw = env.str(name, default=default).strip()
    match = re.fullmatch(r"(\d{1,5})-(\d{1,5})", raw)
    if not match or not 0 < int(match.group(1)) <= int(match.group(2)) < 65536:
        raise ImproperlyConfigured(f"{name} must be a port range like 9200-9299, got {raw!r}")
    return int(match.group(1)), int(match.group(2))


def bind_hosts(name: str, default: str) -> tuple[str, ...]:
    """IP addresses (IPv6 with or without brackets) or `localhost`: never a name DNS answers for."""
    hosts = []
    for item in env.str(name, default=default).split(","):
        host = item.strip().lower().removeprefix("[").removesuffix("]")
        if host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ImproperlyConfigured(
                    f"{name} must list IP addresses or localhost, comma-separated, got {item.strip()!r}"
                ) from None
        hosts.append(host)
    return tuple(hosts)


_RATE = re.compile(r"([1-9][0-9]{0,8})/(s|sec|second|m|min|minute|h|hour|d|day)", re.ASCII)


def rate(name: str, default: str) -> str | None:
    """A request rate like `30/min` (per second, minute, hour or day), or `off` (None)."""
    raw = env.str(name, default=default).strip().lower()
    if raw == "off":
        return None
    if not _RATE.fullmatch(raw):
        raise ImproperlyConfigured(f"{name} must be a rate like 30/min (per s, min, hour or day) or off, got {raw!r}")
    return raw


def origins(name: str) -> list[str]:
    origins = [o.strip() for o in env.str(name, default="").split(",") if o.strip()]
    for origin in origins:
        parsed = urlparse(origin)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc or parsed.path not in {"", "/"}:
            raise ImproperlyConfigured(f"{name} must list origins like https://host:port, got {origin!r}")
    return [o.rstrip("/") for o in origins]


def local_host(host: str) -> bool:
    host = host.lower().removeprefix("[").removesuffix("]")
    if host in {"localhost", "testserver"} or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
