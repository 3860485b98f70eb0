"""What FedML and the processes it starts write is its user's only: files 0600, directories 0700
(log files, FLWR_HOMEs, the SuperLink's state directory, what a child creates, the data dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts import services as accounts_services
from orchestration.private_files import open_private_append
from orchestration.supervisor import FlowerLauncher
from tests.factories import NodeSessionFactory
from tests.stack import ROOT
from tests.supervisor_kit import MakeSupervisor, drive, request_fake, session_ended, started_supervisors, use_own_dirs


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """FedML's own process runs with the common umask 022, which would make files 0644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def dirs(settings, tmp_path: Path, usual_umask: None) -> Path:
    return use_own_dirs(settings, tmp_path)


@pytest.fixture
def make_supervisor(dirs: Path) -> Iterator[MakeSupervisor]:
    yield from started_supervisors()


@pytest.mark.django_db(transaction=True)
def test_a_sessions_log_file_its_flwr_home_and_what_its_child_creates_are_private(make_supervisor, dirs, settings):
    made_by_child = dirs / "var" / "made-by-child.db"
    sup = make_supervisor()
    session = request_fake("2", "0", "--append", str(made_by_child), "state")
    ended = drive(sup, session_ended(session), message="the fake child exits")
    assert ended.exit_code == 0, ended.status_detail
    assert mode(made_by_child) == 0o600  # as the SuperLink's state.db, created by Flower itself
    log_file = Path(ended.log_path)
    assert log_file.parent == settings.LOG_DIR and log_file.read_text()
    assert (mode(log_file), mode(settings.LOG_DIR)) == (0o600, 0o700)
    flwr_home = settings.FLWR_HOME_ROOT / f"fake-session-{session.pk}"
    assert (mode(flwr_home), mode(settings.FLWR_HOME_ROOT), mode(settings.DATA_DIR)) == (0o700, 0o700, 0o700)


@pytest.mark.django_db
def test_the_superlinks_state_directory_is_made_or_narrowed_to_0700(dirs, settings):
    state_dir = settings.DATA_DIR / "superlink"
    state_dir.mkdir(parents=True, mode=0o755)  # as an older FedML left it
    session = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        runtime_config={"host": "127.0.0.1", "port": 9191, "database": str(state_dir / "state.db")},
    )
    FlowerLauncher().session_command(session)
    assert mode(state_dir) == 0o700
    project_dir = settings.DATA_DIR / "superlink" / "another-project"
    session.runtime_config = {**session.runtime_config, "database": str(project_dir / "state.db")}
    FlowerLauncher().session_command(session)
    assert mode(project_dir) == 0o700


def test_a_log_file_an_older_fedml_made_0644_is_narrowed_when_appended_to(tmp_path: Path, usual_umask: None):
    path = tmp_path / "logs" / "superlink.log"
    path.parent.mkdir()
    path.write_text("earlier\n")
    path.chmod(0o644)
    with open_private_append(path) as handle:
        handle.write("later\n")
    assert mode(path) == 0o600 and path.read_text() == "earlier\nlater\n"


def test_settings_create_the_data_dir_0700(tmp_path: Path):
    data_dir = tmp_path / "new" / "var"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "fedml_site.settings",
        "FEDML_DATA_DIR": str(data_dir),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import os, django; os.umask(0o022); django.setup()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (mode(tmp_path / "new"), mode(data_dir)) == (0o700, 0o700)
