"""Typed views of `NodeSession.runtime_config`, the JSON a start request writes and the supervisor reads.

Parsed in one place: services build these and store `to_json()`; the supervisor, the APIs and
the admin read them back with `superlink_config(session)` / `supernode_config(session)`. A
row written by an older FedML without a key gets the same default everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONNECT_ANY = ("0.0.0.0", "", "::", "[::]")

# A session's restart policy, as process managers have it: `on-failure` restarts a process that
# exited by itself with an error (code != 0 or a signal), `always` one that exited at all; never
# one that was asked to stop. Restarts back off (see orchestration/supervisor/restarts.py).
RESTART_NEVER = "never"
RESTART_POLICIES = (RESTART_NEVER, "on-failure", "always")


def connect_host(host: str) -> str:
    """Where a local client connects to a listener bound to `host` (a wildcard means loopback)."""
    return "127.0.0.1" if host in CONNECT_ANY else host


@dataclass(frozen=True)
class ProcessIdentity:
    """pid plus kernel start time and host, so a recycled pid is never mistaken for our child."""

    pid: int
    start_ticks: int | None = None
    hostname: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ProcessIdentity | None:
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        return cls(pid=data["pid"], start_ticks=data.get("start_ticks"), hostname=data.get("hostname"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServerCertificatePaths:
    ca_cert: str
    server_cert: str
    server_key: str


@dataclass(frozen=True)
class SuperlinkConfig:
    host: str
    port: int
    insecure: bool = True
    certificates: ServerCertificatePaths | None = None
    extra_args: list[str] = field(default_factory=list)
    database: str = ""
    process: ProcessIdentity | None = None
    restart_policy: str = "never"  # RESTART_POLICIES: what the supervisor does when the process exits by itself

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connect_address(self) -> str:
        """What `flwr` and local SuperNodes dial (a wildcard bind is reached on loopback)."""
        return f"{connect_host(self.host)}:{self.port}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SuperlinkConfig:
        certs = data.get("certificates")
        return cls(
            host=data.get("host", "127.0.0.1"),
            port=int(data.get("port", 0)),
            insecure=bool(data.get("insecure", True)),
            certificates=ServerCertificatePaths(**certs) if isinstance(certs, dict) else None,
            extra_args=list(data.get("extra_args") or []),
            database=data.get("database", ""),
            process=ProcessIdentity.from_json(data.get("process")),
            restart_policy=str(data.get("restart_policy") or RESTART_NEVER),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "address": self.address,
            "insecure": self.insecure,
            "certificates": asdict(self.certificates) if self.certificates else None,
            "extra_args": list(self.extra_args),
            "database": self.database,
            "restart_policy": self.restart_policy,
            **({"process": self.process.to_json()} if self.process else {}),
        }


@dataclass(frozen=True)
class SupernodeConfig:
    superlink_address: str
    host: str
    port: int
    partition_id: int = 0
    num_partitions: int = 1
    insecure: bool = True
    root_certificates: str | None = None
    auth_private_key: str | None = None
    extra_args: list[str] = field(default_factory=list)
    process: ProcessIdentity | None = None
    restart_policy: str = "never"  # RESTART_POLICIES: what the supervisor does when the process exits by itself

    @property
    def clientappio_api_address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def node_config(self) -> dict[str, int]:
        """Flower's `--node-config`: what the ClientApp reads to pick its data partition."""
        return {"partition-id": self.partition_id, "num-partitions": self.num_partitions}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SupernodeConfig:
        node_config = data.get("node_config") or {}
        return cls(
            superlink_address=data.get("superlink_address", ""),
            host=data.get("host", "127.0.0.1"),
            port=int(data.get("port", 0)),
            partition_id=int(node_config.get("partition-id", 0)),
            num_partitions=int(node_config.get("num-partitions", 1)),
            insecure=bool(data.get("insecure", True)),
            root_certificates=data.get("root_certificates"),
            auth_private_key=data.get("auth_private_key"),
            extra_args=list(data.get("extra_args") or []),
            process=ProcessIdentity.from_json(data.get("process")),
            restart_policy=str(data.get("restart_policy") or RESTART_NEVER),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "auth_private_key": self.auth_private_key,
            "superlink_address": self.superlink_address,
            "host": self.host,
            "port": self.port,
            "node_config": self.node_config,
            "insecure": self.insecure,
            "root_certificates": self.root_certificates,
            "extra_args": list(self.extra_args),
            "restart_policy": self.restart_policy,
            **({"process": self.process.to_json()} if self.process else {}),
        }


def path_or_none(value: str | None) -> Path | None:
    return Path(value) if value else None


def superlink_config(session: Any) -> SuperlinkConfig:
    """The typed runtime config of a SuperLink session (any object with `runtime_config`)."""
    return SuperlinkConfig.from_json(session.runtime_config or {})


def supernode_config(session: Any) -> SupernodeConfig:
    return SupernodeConfig.from_json(session.runtime_config or {})
