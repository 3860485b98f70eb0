"""The one seam through which the supervisor starts processes.

A launcher turns a row (a session, a run, an enrollment) into a `Command` and starts it.
`FlowerLauncher` starts Flower's own programs; tests pass a launcher that starts a small fake
child instead (tests/fake_launcher.py), so nothing of the supervisor itself is replaced.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from django.conf import settings

from orchestration import flower, procs
from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from orchestration.private_files import private_dirs
from orchestration.runtime_config import path_or_none, superlink_config, supernode_config
from orchestration.states import EnrollmentStatus, SessionKind
from orchestration.supervisor.common import telemetry_dir

ContextT = TypeVar("ContextT")

DEFAULT_CONNECTION = "production"


class RunControl(enum.Enum):
    STOP = "stop"  # `flwr stop`: Flower stops the run, `flwr run --stream` then exits by itself
    LS = "ls"  # `flwr ls --format json`: the run's status as Flower knows it
    LOG = "log"  # `flwr log --stream`: follows a run whose `flwr run` died


@dataclass(frozen=True)
class Command:
    """A process to start: an argv list (never a shell), the FLWR_HOME it gets and any extra environment."""

    argv: list[str]
    flwr_home: Path
    env: dict[str, str] = field(default_factory=dict)


class Launcher(Protocol):
    def session_command(self, session: NodeSession) -> Command: ...

    def run_command(self, run: FederatedRun) -> Command: ...

    def run_control_command(self, run: FederatedRun, action: RunControl) -> Command: ...

    def enrollment_command(self, enrollment: NodeEnrollment, superlink: NodeSession) -> Command: ...

    def start(self, command: Command, *, label: str, context: ContextT) -> procs.Child[ContextT]:
        """Start it in a process group of its own, stdout and stderr piped, no stdin."""
        ...


class FlowerLauncher:
    """Flower's SuperLink, SuperNodes and `flwr` commands, each with its own FLWR_HOME and an
    explicit environment (no telemetry, no update check). Settings are read at each call."""

    def session_command(self, session: NodeSession) -> Command:
        home = settings.FLWR_HOME_ROOT / f"{session.kind}-{session.pk}"
        if session.kind == SessionKind.SUPERLINK:
            link = superlink_config(session)
            certs = link.certificates
            database = Path(link.database)
            # The SuperLink's state is FedML's alone: narrowed to 0700 if an older FedML made it 0755.
            private_dirs(database.parent).chmod(0o700)
            argv = flower.superlink_argv(
                bin_dir=settings.FLOWER_BIN_DIR,
                host=link.host,
                port=link.port,
                database=database,
                insecure=link.insecure,
                certificates=flower.ServerCertificates(
                    Path(certs.ca_cert), Path(certs.server_cert), Path(certs.server_key)
                )
                if certs
                else None,
                extra_args=link.extra_args,
            )
            # Only the SuperLink (and so its ServerApps, through SuperExec) learns where
            # telemetry goes; SuperNodes and their ClientApps never do.
            channel = private_dirs(telemetry_dir(session.pk))
            return Command(argv, home, env={flower.TELEMETRY_DIR_ENV: str(channel)})
        node = supernode_config(session)
        argv = flower.supernode_argv(
            bin_dir=settings.FLOWER_BIN_DIR,
            superlink_address=node.superlink_address,
            host=node.host,
            port=node.port,
            node_config=dict(node.node_config),
            insecure=node.insecure,
            root_certificates=path_or_none(node.root_certificates),
            extra_args=node.extra_args,
            auth_private_key=path_or_none(node.auth_private_key),
        )
        return Command(argv, home)

    def run_command(self, run: FederatedRun) -> Command:
        argv = flower.run_argv(
            bin_dir=settings.FLOWER_BIN_DIR,
            app_dir=settings.FLOWER_APP_DIR,
            connection=run.federation_name or DEFAULT_CONNECTION,
            # Always attached: the ServerApp's output (its log and FedML's metrics lines)
            # reaches nobody but the run's log stream. `stream: false` is accepted for
            # compatibility with the earlier API.
            stream=True,
            run_config={
                "current-run-id": str(run.pk),
                "artifact-dir": str(settings.ARTIFACTS_DIR),
                # The project's defaults for keys the request left alone (services.runs).
                **run.config.get("project_run_config", {}),
            },
            extra_args=run.config.get("extra_args", []),
        )
        return Command(argv, self._run_home(run, "run"))

    def run_control_command(self, run: FederatedRun, action: RunControl) -> Command:
        make = {RunControl.STOP: flower.stop_argv, RunControl.LS: flower.ls_argv, RunControl.LOG: flower.log_argv}[
            action
        ]
        argv = make(
            bin_dir=settings.FLOWER_BIN_DIR,
            flower_run_id=run.flower_run_id,
            connection=run.federation_name or DEFAULT_CONNECTION,
        )
        return Command(argv, self._run_home(run, action.value))

    def enrollment_command(self, enrollment: NodeEnrollment, superlink: NodeSession) -> Command:
        home = connection_home(settings.FLWR_HOME_ROOT / f"enrollment-{enrollment.pk}", superlink, DEFAULT_CONNECTION)
        if enrollment.status == EnrollmentStatus.REQUESTED:
            key_file = home / "supernode.pub"
            key_file.write_text(enrollment.public_key + "\n")
            argv = flower.supernode_register_argv(
                bin_dir=settings.FLOWER_BIN_DIR, public_key_file=key_file, connection=DEFAULT_CONNECTION
            )
        else:
            argv = flower.supernode_unregister_argv(
                bin_dir=settings.FLOWER_BIN_DIR,
                flower_node_id=enrollment.flower_node_id,
                connection=DEFAULT_CONNECTION,
            )
        return Command(argv, home)

    def start(self, command: Command, *, label: str, context: ContextT) -> procs.Child[ContextT]:
        private_dirs(command.flwr_home)
        return procs.spawn(
            command.argv,
            env=flower.child_env(flwr_home=command.flwr_home, extra=command.env, bin_dir=settings.FLOWER_BIN_DIR),
            cwd=settings.DATA_DIR,
            label=label,
            context=context,
        )

    def _run_home(self, run: FederatedRun, purpose: str) -> Path:
        """Each `flwr` call of a run gets its own FLWR_HOME holding the run's SuperLink connection."""
        return connection_home(
            settings.FLWR_HOME_ROOT / f"run-{run.pk}" / purpose, run.coordinator_session, run.federation_name
        )


def connection_home(home: Path, superlink: NodeSession | None, connection_name: str) -> Path:
    """A FLWR_HOME whose config.toml names the SuperLink connection (TLS from the session's certificates)."""
    link = superlink_config(superlink) if superlink is not None else None
    private_dirs(home)
    flower.write_cli_config(
        flwr_home=home,
        connection=connection_name or DEFAULT_CONNECTION,
        address=link.connect_address if link else "127.0.0.1:0",
        insecure=link.insecure if link else True,
        root_certificates=Path(link.certificates.ca_cert) if link and link.certificates else None,
    )
    return home
