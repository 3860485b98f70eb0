"""The supervisor driving real child processes (tests/bin/fake_child.py): logs, exits, stops, claims.

Nothing is patched: the supervisor starts the fake child through an injected launcher, as a
real process in its own process group; its pipes are read by the supervisor's reader thread
and its lines saved by the log writer thread. Tests look at rows, log files and the
supervisor's public view of its live children.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from orchestration import procs, selectors, services
from orchestration.models import LogLine, NodeSession
from orchestration.supervisor import Supervisor
from tests.fake_launcher import FakeChildLauncher
from tests.supervisor_kit import (
    MakeSupervisor,
    child_of,
    drive,
    request_fake,
    session_ended,
    started_supervisors,
    use_own_dirs,
)


@pytest.fixture
def dirs(settings, tmp_path: Path) -> Path:
    return use_own_dirs(settings, tmp_path)


@pytest.fixture
def make_supervisor(dirs: Path) -> Iterator[MakeSupervisor]:
    yield from started_supervisors()


def child_lines(session: NodeSession) -> list[LogLine]:
    return list(LogLine.objects.filter(session=session, stream__in=("stdout", "stderr")).order_by("seq"))


def file_lines(session: NodeSession) -> list[str]:
    text = Path(session.log_path).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


# ---------------------------------------------------------------- logs
@pytest.mark.django_db(transaction=True)
def test_five_thousand_lines_on_stdout_and_stderr_arrive_gap_free_in_order_without_ansi(make_supervisor):
    sup = make_supervisor()
    session = request_fake("5000", "0", "--stderr-every", "7", "--ansi")

    done = drive(sup, session_ended(session), timeout=60, message="child to exit")

    rows = list(LogLine.objects.filter(session=session).order_by("seq"))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert [r.text for r in rows] == file_lines(done)
    assert not any("\x1b" in r.text for r in rows)
    stdout = [r.text for r in rows if r.stream == "stdout"]
    stderr = [r.text for r in rows if r.stream == "stderr"]
    assert stdout == [f"INFO: line {i}" for i in range(1, 5001) if i % 7]
    assert stderr == [f"INFO: line {i}" for i in range(7, 5001, 7)]
    assert rows[0].stream == "system" and rows[0].text.startswith(f"[fedml] started pid {done.pid}")
    assert rows[-1].stream == "system" and rows[-1].text == f"[fedml] pid {done.pid} exited with code 0"
    assert {r.source for r in rows} == {f"supernode:{str(session.pk)[:8]}"}
    assert Path(done.log_path).name == f"supernode-p0-{str(session.pk)[:8]}.log"


@pytest.mark.django_db(transaction=True)
def test_a_final_line_without_newline_is_kept(make_supervisor):
    sup = make_supervisor()
    session = request_fake("3", "0", "--no-final-newline")

    done = drive(sup, session_ended(session), message="child to exit")

    assert [r.text for r in child_lines(done)] == ["line 1", "line 2", "line 3"]
    assert "line 3" in file_lines(done)


@pytest.mark.django_db(transaction=True)
def test_log_stream_holds_only_the_newest_log_tail_lines(make_supervisor, settings):
    settings.LOG_TAIL_LINES = 25
    sup = make_supervisor()
    session = request_fake("300", "0")

    done = drive(sup, session_ended(session), message="child to exit")

    tail = done.log_stream.split("\n")
    assert len(tail) == 25
    assert tail == file_lines(done)[-25:]
    assert "line 300" in tail
    assert "line 275" not in tail


@pytest.mark.django_db(transaction=True)
def test_a_finished_childs_pipe_file_objects_are_closed(make_supervisor):
    # If Popen's file objects still claimed the pipe fds after the reader closed them, their
    # finalizers would close those fd numbers again, by then possibly another child's pipe or a
    # database socket (and warn "unclosed file").
    sup = make_supervisor()
    session = request_fake("3", "0")
    # Seen in the pass that spawned it: the reaper runs first in the next one.
    child = drive(sup, lambda: child_of(sup, session.pk), message="child spawned")
    drive(sup, session_ended(session), message="child to exit")
    assert child.io_done.is_set()

    assert child.popen.stdout is not None and child.popen.stderr is not None
    assert child.popen.stdout.closed
    assert child.popen.stderr.closed


# ---------------------------------------------------------------- how a session ends
@pytest.mark.django_db(transaction=True)
def test_a_child_exiting_zero_ends_the_session_exited(make_supervisor):
    sup = make_supervisor()
    session = request_fake("10", "0")

    done = drive(sup, session_ended(session), message="child to exit")

    assert done.status == "exited"
    assert done.exit_code == 0
    assert done.signal is None
    assert done.supervisor_id == sup.id
    assert done.started_at is not None and done.ended_at is not None
    assert done.runtime_config["process"]["pid"] == done.pid
    # Once the row says how it ended the supervisor holds nothing for it.
    drive(sup, lambda: not sup.busy(), message="the supervisor lets go of the session")
    assert sup.live_children() == ()


@pytest.mark.django_db(transaction=True)
def test_a_child_exiting_nonzero_ends_the_session_failed_with_its_last_lines(make_supervisor):
    sup = make_supervisor()
    session = request_fake("50", "3")

    done = drive(sup, session_ended(session), message="child to exit")

    assert done.status == "failed"
    assert done.exit_code == 3
    assert done.signal is None
    assert done.status_detail.startswith("exited with code 3. Last lines:\n")
    assert "\n".join(f"line {i}" for i in range(32, 51)) in done.status_detail
    assert "line 31\n" not in done.status_detail


@pytest.mark.django_db(transaction=True)
def test_a_stop_request_terminates_a_hanging_child_and_records_sigterm(make_supervisor):
    sup = make_supervisor()
    session = request_fake("5", "0", "--hang")
    drive(sup, lambda: len(child_lines(session)) == 5, message="child to print")

    services.session_request_stop(session=NodeSession.objects.get(pk=session.pk))
    done = drive(sup, session_ended(session), message="child to stop")

    assert done.status == "stopped"
    assert done.signal == signal.SIGTERM
    assert done.exit_code is None
    assert done.stop_requested_at is not None
    texts = [r.text for r in LogLine.objects.filter(session=session, stream="system").order_by("seq")]
    assert texts[-1] == f"[fedml] pid {done.pid} died with signal SIGTERM"


@pytest.mark.django_db(transaction=True)
def test_a_child_ignoring_sigterm_is_killed_after_the_stop_timeout(make_supervisor, settings):
    settings.STOP_TIMEOUT_SECONDS = 1
    sup = make_supervisor()
    session = request_fake("5", "0", "--ignore-term", "--hang")
    drive(sup, lambda: len(child_lines(session)) == 5, message="child to print (SIGTERM ignored from here on)")

    services.session_request_stop(session=NodeSession.objects.get(pk=session.pk))
    asked = time.monotonic()
    drive(sup, lambda: NodeSession.objects.get(pk=session.pk).status == "stopping", message="SIGTERM sent")
    done = drive(sup, session_ended(session), message="child to be killed")

    assert time.monotonic() - asked >= 1
    assert done.status == "stopped"
    assert done.signal == signal.SIGKILL
    system = [r.text for r in LogLine.objects.filter(session=session, stream="system").order_by("seq")]
    assert "[fedml] no exit 1s after SIGTERM: sent SIGKILL" in system
    assert system[-1] == f"[fedml] pid {done.pid} died with signal SIGKILL"


@pytest.mark.django_db(transaction=True)
def test_a_session_that_cannot_be_started_fails_saying_fedml_could_not_start_it(make_supervisor):
    sup = make_supervisor()
    session = request_fake("1", "0")
    NodeSession.objects.filter(pk=session.pk).update(runtime_config={})  # the fake launcher finds no argv

    done = drive(sup, session_ended(session), message="the session to fail")

    assert done.status == "failed"
    assert done.status_detail.startswith("FedML could not start the process: ")
    assert sup.live_children() == ()


@pytest.mark.django_db(transaction=True)
def test_shutdown_stops_the_children_it_runs_and_says_why(dirs):
    sup = Supervisor(launcher=FakeChildLauncher())
    sup.start()
    try:
        session = request_fake("2", "0", "--hang")
        drive(sup, lambda: len(child_lines(session)) == 2, message="child to print")
    finally:
        sup.shutdown(timeout=15)
        gc.collect()

    row = NodeSession.objects.get(pk=session.pk)
    assert row.status == "stopped"
    assert row.signal == signal.SIGTERM
    assert row.status_detail == "supervisor shut down"
    assert procs.identity_alive(row.runtime_config["process"]) is False
    assert not selectors.supervisor_is_alive(sup.id)
    assert sup.live_children() == ()
    connection.close()


# ---------------------------------------------------------------- two supervisors
@pytest.mark.django_db(transaction=True)
def test_two_supervisors_racing_for_one_requested_session_only_one_claims_it(make_supervisor):
    first, second = make_supervisor(), make_supervisor()
    session = request_fake("1", "0", "--hang")
    barrier = threading.Barrier(2)
    results: dict[Any, bool] = {}

    def claim(sup: Supervisor) -> None:
        try:
            barrier.wait(5)
            results[sup.id] = services.session_claim(session_id=session.pk, supervisor_id=sup.id)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(sup,)) for sup in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results.values()) == [False, True]
    winner = next(sup_id for sup_id, won in results.items() if won)
    row = NodeSession.objects.get(pk=session.pk)
    assert row.status == "starting"
    assert row.supervisor_id == winner


@pytest.mark.django_db(transaction=True)
def test_two_supervisors_stepping_at_once_spawn_the_requested_session_once(make_supervisor):
    first_launcher, second_launcher = FakeChildLauncher(), FakeChildLauncher()
    first, second = make_supervisor(first_launcher), make_supervisor(second_launcher)
    session = request_fake("1", "0", "--hang")
    barrier = threading.Barrier(2)
    spawned: dict[Any, bool] = {}

    def claim_and_spawn(sup: Supervisor) -> None:
        try:
            barrier.wait(5)
            spawned[sup.id] = sup.sessions.claim_and_spawn()
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_and_spawn, args=(sup,)) for sup in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(spawned.values()) == [False, True]
    winner, loser = (first, second) if spawned[first.id] else (second, first)
    assert [c.context.subject_id for c in winner.live_children()] == [str(session.pk)]
    assert loser.live_children() == ()
    assert first_launcher.of("session") + second_launcher.of("session") == [str(session.pk)]
    row = NodeSession.objects.get(pk=session.pk)
    assert row.status == "running"
    assert row.supervisor_id == winner.id

    services.session_request_stop(session=row)
    assert drive(winner, session_ended(session), message="winner stops its child").status == "stopped"
