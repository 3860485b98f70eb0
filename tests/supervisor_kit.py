"""What supervisor tests share: their own data dirs, supervisors with a fake launcher, and a
driver that steps a supervisor's loop in the test's thread until something observable happens."""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.db import connection

from accounts import services as accounts_services
from orchestration import procs
from orchestration.models import FederatedRun, NodeSession
from orchestration.private_files import private_dirs
from orchestration.supervisor import Supervisor
from orchestration.supervisor.common import telemetry_dir
from tests.factories import FederatedRunFactory, NodeSessionFactory, SupervisorHeartbeatFactory
from tests.fake_launcher import FakeChildLauncher
from tests.stack import ROOT, free_port

MakeSupervisor = Callable[..., Supervisor]


def use_own_dirs(settings: Any, tmp_path: Path) -> Path:
    """Point every directory the supervisor writes to under `tmp_path`."""
    settings.DATA_DIR = tmp_path / "var"
    settings.LOG_DIR = tmp_path / "logs"
    settings.FLWR_HOME_ROOT = tmp_path / "var" / "flwr_home"
    settings.ARTIFACTS_DIR = tmp_path / "var" / "artifacts"
    settings.CERTIFICATES_DIR = tmp_path / "var" / "certificates"
    # The run worker writes `current-run-id` into the app's pyproject: never the repository's.
    settings.FLOWER_APP_DIR = tmp_path / "flower_app"
    settings.FLOWER_APP_DIR.mkdir()
    shutil.copy(ROOT / "flower_app" / "pyproject.toml", settings.FLOWER_APP_DIR / "pyproject.toml")
    return tmp_path


def started_supervisors() -> Iterator[MakeSupervisor]:
    """Body of a `make_supervisor` fixture: `make(launcher=None)` starts one; all shut down after."""
    started: list[Supervisor] = []

    def make(launcher: FakeChildLauncher | None = None) -> Supervisor:
        sup = Supervisor(launcher=launcher or FakeChildLauncher())
        started.append(sup)
        sup.start()
        return sup

    yield make
    for sup in reversed(started):
        sup.shutdown(timeout=15)
    gc.collect()  # finalise the children's Popen objects now, so any warning lands on this test
    connection.close()


def drive(sup: Supervisor, until: Callable[[], Any], *, timeout: float = 30, message: str = "") -> Any:
    """Step the supervisor's loop in this thread until `until()` is true (`timeout` only catches a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        sup.step()
        value = until()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(0.02)  # pacing between passes, as the real loop naps


def request_fake(*args: str) -> NodeSession:
    node = accounts_services.participant_node_ensure()
    return NodeSessionFactory(node=node, kind="supernode", status="requested", runtime_config={"fake_args": list(args)})


def session_ended(session: NodeSession) -> Callable[[], NodeSession | None]:
    def check() -> NodeSession | None:
        row = NodeSession.objects.get(pk=session.pk)
        return None if row.is_live else row

    return check


def child_of(sup: Supervisor, row_id: Any) -> procs.Child[Any] | None:
    return next((c for c in sup.live_children() if c.context.subject_id == str(row_id)), None)


def run_on_a_silent_superlink() -> tuple[FederatedRun, int]:
    """A requested run whose SuperLink row is running but whose port does not accept connections yet.

    The SuperLink row belongs to a live supervisor, so the start-up reconcile of the supervisor
    under test does not take it for an orphan."""
    port = free_port()
    superlink = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        status="running",
        supervisor_id=SupervisorHeartbeatFactory().id,
        runtime_config={"host": "127.0.0.1", "port": port, "address": f"127.0.0.1:{port}", "insecure": True},
    )
    run = FederatedRunFactory(project=superlink.node.project, coordinator_session=superlink, status="requested")
    return run, port


def superlink_row(port: int) -> NodeSession:
    """A running SuperLink row of a live supervisor (so no start-up reconcile takes it for an
    orphan), with the telemetry directory its start would have made."""
    link = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        status="running",
        supervisor_id=SupervisorHeartbeatFactory().id,
        runtime_config={"host": "127.0.0.1", "port": port, "address": f"127.0.0.1:{port}", "insecure": True},
    )
    private_dirs(telemetry_dir(link.pk))
    return link


def request_run(superlink: NodeSession) -> FederatedRun:
    return FederatedRunFactory(project=superlink.node.project, coordinator_session=superlink, status="requested")


def run_ended(run: FederatedRun) -> Callable[[], FederatedRun | None]:
    def check() -> FederatedRun | None:
        row = FederatedRun.objects.get(pk=run.pk)
        return None if row.is_live else row

    return check
