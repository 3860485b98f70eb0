"""The supervisor driving real child processes (tests/bin/fake_child.py): logs, exits, stops, claims, reconcile.

Nothing is patched: the fake child is a real process in its own process group, its pipes are
read by the supervisor's reader thread and its lines saved by the log writer thread.
"""

from __future__ import annotations

import gc
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from orchestration import procs, selectors, services
from orchestration.logpipe import Owner
from orchestration.models import FederatedRun, LogLine, NodeSession
from orchestration.supervisor import Supervisor
from tests.conftest import FAKE_CHILD, wait_until
from tests.factories import FederatedRunFactory, NodeSessionFactory, SupervisorHeartbeatFactory

LIVE = ("requested", "starting", "running", "stopping")


class FakeChildSupervisor(Supervisor):
    """Spawns the fake child with runtime_config["fake_args"] instead of a Flower process."""

    def __init__(self, *, log_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_dir = log_dir
        self.spawned_runs: list[Any] = []

    def _spawn_fake(self, owner: Owner, fake_args: list[str], source: str) -> tuple[procs.Child, Path]:
        log_path = self.log_dir / f"{owner.kind}-{owner.id}.log"
        child = self._spawn(
            [sys.executable, str(FAKE_CHILD), *fake_args],
            flwr_home=django_settings.FLWR_HOME_ROOT / f"fake-{owner.id}",
            label=f"fake {owner.kind} {owner.id}",
            owner=owner,
            source=source,
            log_path=log_path,
        )
        return child, log_path

    def _spawn_run(self, run: FederatedRun) -> None:
        """Stands in for `flwr run`: a child that hangs until stopped."""
        child, log_path = self._spawn_fake(Owner("run", run.pk), ["1", "0", "--hang"], "run")
        # What Supervisor._spawn_run does once the process exists.
        child.context["run_id"] = str(run.pk)
        self._run_children[str(run.pk)] = child
        self.spawned_runs.append(run.pk)
        services.run_mark_spawned(
            run_id=run.pk, pid=child.pid, log_path=str(log_path), identity=procs.process_identity(child.pid)
        )

    def _spawn_session(self, session: NodeSession) -> None:
        child, log_path = self._spawn_fake(Owner("session", session.pk), session.runtime_config["fake_args"], "fake")
        # What Supervisor._spawn_session does once the process exists.
        child.context["session_id"] = str(session.pk)
        self._session_children[str(session.pk)] = child
        services.session_mark_running(
            session_id=session.pk, pid=child.pid, log_path=str(log_path), identity=procs.process_identity(child.pid)
        )


@pytest.fixture
def dirs(settings, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path / "var"
    settings.LOG_DIR = tmp_path / "logs"
    settings.FLWR_HOME_ROOT = tmp_path / "var" / "flwr_home"
    settings.ARTIFACTS_DIR = tmp_path / "var" / "artifacts"
    settings.CERTIFICATES_DIR = tmp_path / "var" / "certificates"
    return tmp_path


@pytest.fixture
def make_supervisor(dirs: Path) -> Iterator[Callable[[], FakeChildSupervisor]]:
    started: list[FakeChildSupervisor] = []

    def make() -> FakeChildSupervisor:
        sup = FakeChildSupervisor(log_dir=dirs / "logs")
        started.append(sup)
        sup.start()
        return sup

    yield make
    for sup in reversed(started):
        sup.shutdown(timeout=15)
    for sup in started:
        sup.reader.join(timeout=5)
    gc.collect()  # finalise the children's Popen objects now, so any warning lands on this test
    connection.close()


def drive(sup: Supervisor, until: Callable[[], Any], *, timeout: float = 30, message: str = "") -> Any:
    """Run the supervisor's main loop in this thread until `until()` is true."""
    deadline = time.monotonic() + timeout
    while True:
        sup.step()
        value = until()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(0.02)


def request_fake(*args: str) -> NodeSession:
    node = services.participant_node_ensure()
    return NodeSessionFactory(node=node, kind="supernode", status="requested", runtime_config={"fake_args": list(args)})


def ended(session: NodeSession) -> Callable[[], NodeSession | None]:
    def check() -> NodeSession | None:
        row = NodeSession.objects.get(pk=session.pk)
        return row if row.status not in LIVE else None

    return check


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

    done = drive(sup, ended(session), timeout=60, message="child to exit")

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
    assert {r.source for r in rows} == {"fake"}


@pytest.mark.django_db(transaction=True)
def test_a_final_line_without_newline_is_kept(make_supervisor):
    sup = make_supervisor()
    session = request_fake("3", "0", "--no-final-newline")

    done = drive(sup, ended(session), message="child to exit")

    assert [r.text for r in child_lines(done)] == ["line 1", "line 2", "line 3"]
    assert "line 3" in file_lines(done)


@pytest.mark.django_db(transaction=True)
def test_log_stream_holds_only_the_newest_log_tail_lines(make_supervisor, settings):
    settings.LOG_TAIL_LINES = 25
    sup = make_supervisor()
    session = request_fake("300", "0")

    done = drive(sup, ended(session), message="child to exit")

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
    child = drive(sup, lambda: sup._session_children.get(str(session.pk)), message="child spawned")
    drive(sup, ended(session), message="child to exit")
    assert child.io_done.is_set()

    assert child.popen.stdout is not None and child.popen.stderr is not None
    assert child.popen.stdout.closed
    assert child.popen.stderr.closed


# ---------------------------------------------------------------- how a session ends
@pytest.mark.django_db(transaction=True)
def test_a_child_exiting_zero_ends_the_session_exited(make_supervisor):
    sup = make_supervisor()
    session = request_fake("10", "0")

    done = drive(sup, ended(session), message="child to exit")

    assert done.status == "exited"
    assert done.exit_code == 0
    assert done.signal is None
    assert done.supervisor_id == sup.id
    assert done.started_at is not None and done.ended_at is not None
    assert done.runtime_config["process"]["pid"] == done.pid
    assert str(session.pk) not in sup._session_children


@pytest.mark.django_db(transaction=True)
def test_a_child_exiting_nonzero_ends_the_session_failed_with_its_last_lines(make_supervisor):
    sup = make_supervisor()
    session = request_fake("50", "3")

    done = drive(sup, ended(session), message="child to exit")

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
    done = drive(sup, ended(session), message="child to stop")

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
    done = drive(sup, ended(session), message="child to be killed")

    assert time.monotonic() - asked >= 1
    assert done.status == "stopped"
    assert done.signal == signal.SIGKILL
    system = [r.text for r in LogLine.objects.filter(session=session, stream="system").order_by("seq")]
    assert "[fedml] no exit 1s after SIGTERM: sent SIGKILL" in system
    assert system[-1] == f"[fedml] pid {done.pid} died with signal SIGKILL"


@pytest.mark.django_db(transaction=True)
def test_shutdown_stops_the_children_it_runs_and_says_why(dirs):
    sup = FakeChildSupervisor(log_dir=dirs / "logs")
    sup.start()
    try:
        session = request_fake("2", "0", "--hang")
        drive(sup, lambda: len(child_lines(session)) == 2, message="child to print")
    finally:
        sup.shutdown(timeout=15)
        sup.reader.join(timeout=5)
        gc.collect()

    row = NodeSession.objects.get(pk=session.pk)
    assert row.status == "stopped"
    assert row.signal == signal.SIGTERM
    assert row.status_detail == "supervisor shut down"
    assert procs.identity_alive(row.runtime_config["process"]) is False
    assert not selectors.supervisor_is_alive(sup.id)
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
    first, second = make_supervisor(), make_supervisor()
    session = request_fake("1", "0", "--hang")
    barrier = threading.Barrier(2)
    spawned: dict[Any, bool] = {}

    def claim_and_spawn(sup: Supervisor) -> None:
        try:
            barrier.wait(5)
            spawned[sup.id] = sup.claim_and_spawn()
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_and_spawn, args=(sup,)) for sup in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(spawned.values()) == [False, True]
    winner = first if spawned[first.id] else second
    loser = second if winner is first else first
    assert list(winner._session_children) == [str(session.pk)]
    assert loser._session_children == {}
    assert not loser.children
    row = NodeSession.objects.get(pk=session.pk)
    assert row.status == "running"
    assert row.supervisor_id == winner.id

    services.session_request_stop(session=row)
    assert drive(winner, ended(session), message="winner stops its child").status == "stopped"


# ---------------------------------------------------------------- reconcile after a supervisor died
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
            node=services.participant_node_ensure(),
            kind="supernode",
            status="running",
            supervisor_id=dead.id,
            pid=orphan.pid,
            runtime_config={"process": procs.process_identity(orphan.pid)},
        )

        # Not stepped: the orphan is this test's child, reaped by orphan.wait(). Reconciliation
        # may run in start() or beside the loop, so wait for its verdict on the row.
        make_supervisor()
        row = wait_until(ended(session), timeout=20, interval=0.05, message="reconcile to settle the session")

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
        node=services.coordinator_node_ensure(),
        kind="superlink",
        status="running",
        supervisor_id=dead.id,
        pid=gone.pid,
        runtime_config={"process": identity},
    )

    make_supervisor()
    row = wait_until(ended(session), timeout=20, interval=0.05, message="reconcile to settle the session")

    assert row.status == "lost"
    assert row.status_detail == f"supervisor {dead.id} died; the process (pid {gone.pid}) was already gone"


@pytest.mark.django_db(transaction=True)
def test_reconcile_leaves_sessions_of_a_live_supervisor_alone(make_supervisor):
    other = SupervisorHeartbeatFactory(hostname=socket.gethostname())
    session = NodeSessionFactory(
        node=services.participant_node_ensure(), kind="supernode", status="running", supervisor_id=other.id
    )
    # A session of a dead supervisor, settled by the same reconcile pass: once it is lost, the pass is done.
    sentinel = NodeSessionFactory(
        node=services.participant_node_ensure(),
        kind="supernode",
        status="running",
        supervisor_id=_dead_supervisor().id,
        runtime_config={"process": {"pid": 2**22 + 7, "start_ticks": 1, "hostname": socket.gethostname()}},
    )

    make_supervisor()
    wait_until(ended(sentinel), timeout=20, interval=0.05, message="reconcile to settle the sentinel")

    assert NodeSession.objects.get(pk=session.pk).status == "running"


# ---------------------------------------------------------------- runs and their SuperLink
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_on_a_silent_superlink() -> tuple[FederatedRun, int]:
    """A requested run whose SuperLink row is running but whose port does not accept connections yet."""
    port = _free_port()
    superlink = NodeSessionFactory(
        node=services.coordinator_node_ensure(),
        kind="superlink",
        status="running",
        runtime_config={"host": "127.0.0.1", "port": port, "address": f"127.0.0.1:{port}", "insecure": True},
    )
    run = FederatedRunFactory(project=superlink.node.project, coordinator_session=superlink, status="requested")
    return run, port


@pytest.mark.django_db(transaction=True)
def test_a_run_is_claimed_at_once_and_spawned_only_once_its_superlink_listens(make_supervisor):
    sup = make_supervisor()
    run, port = _run_on_a_silent_superlink()

    waiting = drive(
        sup,
        lambda: FederatedRun.objects.filter(pk=run.pk, status="starting", status_detail__startswith="waiting").first(),
        message="the run claimed and waiting",
    )
    for _ in range(20):
        sup.step()

    assert waiting.supervisor_id == sup.id
    assert waiting.pid is None
    assert waiting.status_detail == f"waiting for the SuperLink at 127.0.0.1:{port} to accept connections"
    assert sup.spawned_runs == []

    with socket.create_server(("127.0.0.1", port)):
        spawned = drive(
            sup, lambda: FederatedRun.objects.filter(pk=run.pk, pid__isnull=False).first(), message="spawned"
        )
    assert sup.spawned_runs == [run.pk]
    assert spawned.status == "starting"
    assert spawned.status_detail == ""  # the waiting note is gone once the process exists


@pytest.mark.django_db(transaction=True)
def test_stopping_a_run_that_waits_for_its_superlink_ends_it_stopped_without_spawning(make_supervisor):
    sup = make_supervisor()
    run, _ = _run_on_a_silent_superlink()
    drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="starting").exists(), message="claimed")

    services.run_request_stop(project=run.project)
    row = drive(
        sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="stopped").first(), message="the run stopped"
    )

    assert row.ended_at is not None
    assert row.status_detail.startswith("stopped before `flwr run` was started")
    assert sup.spawned_runs == []
    assert sup._runs_awaiting_superlink == {}


@pytest.mark.django_db(transaction=True)
def test_shutdown_ends_a_run_still_waiting_for_its_superlink_stopped(dirs):
    sup = FakeChildSupervisor(log_dir=dirs / "logs")
    sup.start()
    try:
        run, _ = _run_on_a_silent_superlink()
        drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="starting").exists(), message="claimed")
    finally:
        sup.shutdown(timeout=15)
        sup.reader.join(timeout=5)
        gc.collect()

    row = FederatedRun.objects.get(pk=run.pk)
    assert row.status == "stopped"
    assert row.status_detail == "supervisor shut down before `flwr run` was started"
    assert sup.spawned_runs == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_reconcile_fails_a_run_a_dead_supervisor_claimed_but_never_spawned(make_supervisor):
    dead = _dead_supervisor()
    run, _ = _run_on_a_silent_superlink()
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
