"""The supervisor through a database outage (issue: "a database blip ... never costs a federation,
a line or a truthful row"). The real database is made unreachable for the whole process
(tests/outage_kit.py) while a real child keeps printing and then exits: the supervisor keeps
its children and pipes, journals every line, and once the database answers records the exit
and back-fills the lines gap-free, with the outage on its heartbeat row."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts import services as accounts_services
from orchestration.models import LogLine, NodeSession, SupervisorHeartbeat
from orchestration.supervisor import Supervisor
from tests.factories import NodeSessionFactory, SupervisorHeartbeatFactory
from tests.outage_kit import unreachable_database
from tests.supervisor_kit import MakeSupervisor, drive, request_fake, session_ended, started_supervisors, use_own_dirs

CHILD_LINES = 300


@pytest.fixture
def dirs(settings, tmp_path: Path) -> Path:
    return use_own_dirs(settings, tmp_path)


@pytest.fixture
def make_supervisor(dirs: Path) -> Iterator[MakeSupervisor]:
    yield from started_supervisors()


def _step_without_database(sup: Supervisor, until, what: str) -> None:  # noqa: ANN001
    """Step the loop while nothing can reach the database; `until` must not query it."""
    deadline = time.monotonic() + 60
    while not until():
        sup.step()  # must not raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.02)  # pacing between passes, as the real loop naps


def _running(session: NodeSession):  # noqa: ANN202
    return lambda: NodeSession.objects.get(pk=session.pk).status == "running"


def _child_lines(session: NodeSession) -> list[LogLine]:
    return list(LogLine.objects.filter(session=session).order_by("seq"))


@pytest.mark.django_db(transaction=True)
def test_a_child_that_prints_and_exits_during_an_outage_loses_no_line_and_its_exit_is_recorded(make_supervisor):
    sup = make_supervisor()
    session = request_fake(str(CHILD_LINES), "3", "--sleep", "0.004")
    drive(sup, _running(session), message="session running")

    with unreachable_database():
        # Every line of the child, and the supervisor's line saying how it ended, wait on disk.
        _step_without_database(
            sup,
            lambda: not sup.live_children() and sup.writer.lines_journalled >= 1,
            "the child to exit while the database is unreachable",
        )
        assert sup.database.down
        assert sup.writer.flush(timeout=0.5) is False  # its exit waits behind its lines

    ended = drive(sup, session_ended(session), message="the exit recorded once the database answers")

    assert (ended.status, ended.exit_code) == ("failed", 3)
    rows = _child_lines(session)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))  # gap-free, no duplicate
    assert [r.text for r in rows if r.stream == "stdout"] == [f"line {i}" for i in range(1, CHILD_LINES + 1)]
    assert rows[-1].text == f"[fedml] pid {ended.pid} exited with code 3"
    assert [r.text for r in rows] == Path(ended.log_path).read_text(encoding="utf-8").splitlines()
    assert "line 300" in ended.status_detail  # its last lines, for the operator
    assert list((Path(sup.writer.journal_dir)).iterdir()) == []

    drive(sup, lambda: SupervisorHeartbeat.objects.get(pk=sup.id).database_outages == 1, message="heartbeat")
    beat = SupervisorHeartbeat.objects.get(pk=sup.id)
    assert beat.last_database_outage_started_at < beat.last_database_outage_ended_at


@pytest.mark.django_db(transaction=True)
def test_an_outage_stops_nothing_the_children_keep_running_and_their_rows_stay_true(make_supervisor):
    sup = make_supervisor()
    session = request_fake("5", "0", "--hang")
    drive(sup, _running(session), message="session running")

    with unreachable_database():
        _step_without_database(sup, lambda: sup.database.down, "the outage noticed")
        child = sup.live_children()[0]
        assert child.alive  # the federation carries on: nothing is stopped for an outage

    drive(sup, lambda: not sup.database.down, message="the database answers again")
    row = NodeSession.objects.get(pk=session.pk)
    assert (row.status, row.stop_requested_at) == ("running", None)
    assert sup.live_children()[0].pid == child.pid


@pytest.mark.django_db(transaction=True)
def test_a_supervisor_stopped_during_an_outage_stops_its_processes_and_the_next_one_back_fills_their_lines(
    make_supervisor,
):
    sup = make_supervisor()
    session = request_fake("20", "0", "--hang")
    drive(sup, lambda: LogLine.objects.filter(session=session, stream="stdout").count() == 20, message="lines")
    pid = sup.live_children()[0].pid

    with unreachable_database():
        _step_without_database(sup, lambda: sup.database.down, "the outage noticed")
        sup.shutdown(timeout=10)  # must not raise
        assert sup.live_children() == ()
        journal = list(Path(sup.writer.journal_dir).iterdir())
        assert [p.name for p in journal] == [f"session-{session.pk}.jsonl"]  # the exit lines wait on disk

    second = make_supervisor()  # its start-up reconcile ends the row; its writer back-fills the journal
    ended = drive(second, session_ended(session), message="the row reconciled")
    drive(second, lambda: not list(Path(second.writer.journal_dir).iterdir()), message="journal back-filled")

    rows = _child_lines(session)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1].text == f"[fedml] pid {pid} died with signal SIGTERM"
    assert ended.status != "running"


@pytest.mark.django_db(transaction=True)
def test_a_reconcile_that_meets_an_outage_waits_for_the_database_and_then_settles_the_rows(make_supervisor, caplog):
    sup = make_supervisor()
    drive(sup, lambda: not sup.reconciler.busy(), message="the start-up reconcile to end")
    dead = SupervisorHeartbeatFactory(
        hostname=socket.gethostname(),
        beat_at=timezone.now() - timedelta(minutes=5),
        started_at=timezone.now() - timedelta(hours=1),
    )
    session = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(), kind="superlink", status="running", supervisor_id=dead.id
    )
    caplog.set_level(logging.WARNING, logger="orchestration.supervisor.reconcile")

    with unreachable_database():
        reconcile = threading.Thread(target=sup.reconciler._run)  # the pass a restart runs, met by an outage
        reconcile.start()
        deadline = time.monotonic() + 30
        while not any("waits for the database" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the reconcile never met the outage"
            time.sleep(0.02)
    reconcile.join(timeout=60)

    assert not reconcile.is_alive()
    row = NodeSession.objects.get(pk=session.pk)
    assert row.status == "lost"
    assert "reconciliation failed" not in caplog.text
