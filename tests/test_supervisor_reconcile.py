"""Restart policy: a supervisor starting next to rows a dead supervisor left live makes them tell
the truth and leaves no orphan (docs/architecture.md, "Restart policy"). The orphans are real
processes standing in for Flower's."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts import services as accounts_services
from orchestration import procs
from orchestration.models import FederatedRun, NodeSession
from tests.factories import NodeSessionFactory, SupervisorHeartbeatFactory
from tests.stack import FAKE_CHILD, wait_until
from tests.supervisor_kit import (
    MakeSupervisor,
    run_on_a_silent_superlink,
    session_ended,
    started_supervisors,
    use_own_dirs,
)


@pytest.fixture
def make_supervisor(settings, tmp_path: Path) -> Iterator[MakeSupervisor]:
    use_own_dirs(settings, tmp_path)
    yield from started_supervisors()


def _dead_supervisor() -> Any:
    return SupervisorHeartbeatFactory(
        hostname=socket.gethostname(),
        beat_at=timezone.now() - timedelta(minutes=5),
        started_at=timezone.now() - timedelta(hours=1),
    )


def _orphan(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - a real process standing in for an orphaned Flower child
        [sys.executable, str(FAKE_CHILD), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.django_db(transaction=True)
def test_reconcile_terminates_a_live_orphan_of_a_dead_supervisor_and_marks_it_lost(make_supervisor, settings):
    settings.STOP_TIMEOUT_SECONDS = 1
    dead = _dead_supervisor()
    orphan = _orphan("1", "0", "--hang")
    try:
        wait_until(lambda: procs.process_identity(orphan.pid)["start_ticks"] is not None, timeout=5)
        session = NodeSessionFactory(
            node=accounts_services.participant_node_ensure(),
            kind="supernode",
            status="running",
            supervisor_id=dead.id,
            pid=orphan.pid,
            runtime_config={"process": procs.process_identity(orphan.pid)},
        )

        # Not stepped: the orphan is this test's child, reaped by orphan.wait(). Reconciliation
        # runs beside the loop, so wait for its verdict on the row.
        make_supervisor()
        row = wait_until(session_ended(session), timeout=20, interval=0.05, message="reconcile to settle the session")

        assert orphan.wait(timeout=10) == -signal.SIGTERM
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    assert row.status == "lost"
    assert row.ended_at is not None
    assert f"supervisor {dead.id} died" in row.status_detail
    assert f"terminated the orphaned process group (pid {orphan.pid})" in row.status_detail


@pytest.mark.django_db(transaction=True)
def test_reconcile_marks_a_session_whose_process_is_gone_lost(make_supervisor):
    dead = _dead_supervisor()
    gone = _orphan("1", "0", "--hang")
    wait_until(lambda: procs.process_identity(gone.pid)["start_ticks"] is not None, timeout=5)
    identity = procs.process_identity(gone.pid)
    gone.kill()
    gone.wait()
    session = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        status="running",
        supervisor_id=dead.id,
        pid=gone.pid,
        runtime_config={"process": identity},
    )

    make_supervisor()
    row = wait_until(session_ended(session), timeout=20, interval=0.05, message="reconcile to settle the session")

    assert row.status == "lost"
    assert row.status_detail == f"supervisor {dead.id} died; the process (pid {gone.pid}) was already gone"


@pytest.mark.django_db(transaction=True)
def test_reconcile_leaves_sessions_of_a_live_supervisor_alone(make_supervisor):
    other = SupervisorHeartbeatFactory(hostname=socket.gethostname())
    session = NodeSessionFactory(
        node=accounts_services.participant_node_ensure(), kind="supernode", status="running", supervisor_id=other.id
    )
    # A session of a dead supervisor, settled by the same reconcile pass: once it is lost, the pass is done.
    sentinel = NodeSessionFactory(
        node=accounts_services.participant_node_ensure(),
        kind="supernode",
        status="running",
        supervisor_id=_dead_supervisor().id,
        runtime_config={"process": {"pid": 2**22 + 7, "start_ticks": 1, "hostname": socket.gethostname()}},
    )

    make_supervisor()
    wait_until(session_ended(sentinel), timeout=20, interval=0.05, message="reconcile to settle the sentinel")

    assert NodeSession.objects.get(pk=session.pk).status == "running"


@pytest.mark.django_db(transaction=True)
def test_reconcile_fails_a_run_a_dead_supervisor_claimed_but_never_spawned(make_supervisor):
    dead = _dead_supervisor()
    run, _ = run_on_a_silent_superlink()
    FederatedRun.objects.filter(pk=run.pk).update(status="starting", supervisor_id=dead.id)

    make_supervisor()
    row = wait_until(
        lambda: FederatedRun.objects.filter(pk=run.pk, ended_at__isnull=False).first(),
        timeout=20,
        interval=0.05,
        message="reconcile to settle the run",
    )

    assert row.status == "failed"
    assert row.status_detail == f"supervisor {dead.id} died while the run was starting; `flwr run` had not been started"
