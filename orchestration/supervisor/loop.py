"""The supervisor's loop: one thread steps every worker, over and over.

Threads and who owns what:
- the loop thread (`run_forever`, or a test calling `step()`) is the only one that changes a
  worker's state: its dicts of children, deadlines and pending answers;
- the pipe reader (procs.PipeReader) reads every child's pipes and hands lines to the log writer;
- the log writer (logpipe.LogWriter) saves lines, then hands what the workers need (Flower's
  run id, telemetry lines, exits behind a child's last line) to their inboxes;
- the reconcile thread runs once at start-up; it changes rows only through services and starts
  `flwr` commands through the child table, whose registry is guarded by a lock;
- answers of short `flwr` commands are futures, resolved once the loop has reaped the command
  and its output is read.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from orchestration import procs, selectors, services
from orchestration.logpipe import Line, LogWriter, Owner
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.common import (
    POLL_INTERVAL,
    SUPERLINK_STOP_WAIT_FOR_RUN,
    Child,
    ChildRole,
    Owed,
    Worker,
    is_database_outage,
)
from orchestration.supervisor.database import DatabaseState
from orchestration.supervisor.enrollments import EnrollmentWorker
from orchestration.supervisor.finisher import RunFinisher
from orchestration.supervisor.flower_control import FlowerControl
from orchestration.supervisor.heartbeat import Heartbeat
from orchestration.supervisor.launcher import Launcher
from orchestration.supervisor.reaper import Reaper
from orchestration.supervisor.reconcile import Reconciler
from orchestration.supervisor.runs import RunWorker
from orchestration.supervisor.scope import Scope
from orchestration.supervisor.sessions import SessionWorker
from orchestration.supervisor.telemetry import Telemetry

logger = logging.getLogger(__name__)

KILL_WAIT = 5.0  # after the final SIGKILL, how long a shutdown waits for the exits to be recorded


class Supervisor:
    """The only process that spawns, watches, stops and reaps Flower's processes.

    Every process starts through `launcher`. Web workers record intent in rows; the workers
    claim it with conditional updates, so two supervisors never start the same thing.
    """

    def __init__(self, *, launcher: Launcher, scope: Scope | None = None) -> None:
        self.id = uuid.uuid4()
        self.hostname = socket.gethostname()
        services.data_dirs_ensure()
        self.scope = scope or Scope()
        self.scope.ensure_rows()
        self.shutting_down = False  # loop thread only
        self._wake = threading.Event()  # set by any inbox: the loop skips its nap
        self.writer = LogWriter(
            append=services.log_lines_append,
            last_seq=selectors.log_last_seq,
            recent_lines=settings.LOG_TAIL_LINES,
            on_saved=self._on_lines_saved,
            before_batch=close_old_connections,
            release=_close_this_threads_connection,
            journal_dir=Path(settings.DATA_DIR) / "journal",
        )
        self.subreaper = procs.set_child_subreaper()
        self.owed = Owed()
        self.database = DatabaseState()
        self.table = ChildTable(launcher=launcher, writer=self.writer)
        control = FlowerControl(table=self.table)
        self.heartbeat = Heartbeat(
            supervisor_id=self.id, hostname=self.hostname, started_at=timezone.now(), database=self.database
        )
        self.reaper = Reaper(table=self.table, subreaper=self.subreaper)
        self.telemetry = Telemetry()
        self.sessions = SessionWorker(
            supervisor_id=self.id, scope=self.scope, table=self.table, owed=self.owed, wake=self._wake
        )
        self.finisher = RunFinisher(control=control, telemetry=self.telemetry)
        self.runs = RunWorker(
            supervisor_id=self.id,
            scope=self.scope,
            table=self.table,
            control=control,
            finisher=self.finisher,
            telemetry=self.telemetry,
            owed=self.owed,
            wake=self._wake,
        )
        self.enrollments = EnrollmentWorker(supervisor_id=self.id, scope=self.scope, table=self.table)
        self.reconciler = Reconciler(hostname=self.hostname, scope=self.scope, control=control, writer=self.writer)
        # In this order each pass: exits are reaped before the workers that record them run, and
        # writes owed from an earlier pass are made before any new one. The reaper needs no
        # database: it runs on every pass, outage or not.
        self.workers: tuple[Worker, ...] = (
            self.reaper,
            self.heartbeat,
            self.owed,
            self.telemetry,
            self.sessions,
            self.runs,
            self.finisher,
            self.enrollments,
            self.reconciler,
        )

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        left = self.writer.recover()
        if left:
            logger.warning("back-filling the journalled lines of %d logs an earlier supervisor left", len(left))
        self.writer.start()
        self.table.reader.start()
        self.heartbeat.beat()
        self.reconciler.start()

    def run_forever(self, stop_event: threading.Event) -> None:
        self.start()
        try:
            while not stop_event.is_set():
                if not self.step():
                    self._nap(POLL_INTERVAL)
        finally:
            self.shutdown()

    def step(self) -> bool:
        """One pass over every worker; returns whether any did work.

        While the database is unreachable only the reaper runs between attempts (which back off
        up to DB_RETRY_MAX); the children, their pipes and their lines (journalled by the log
        writer) carry on, and a worker meeting the outage leaves its work for the next pass.
        """
        did = self.reaper.step()
        if not self.database.due():
            return did
        try:
            close_old_connections()
            for worker in self.workers[1:]:
                did |= worker.step()
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            self.database.unreachable(exc)
            _close_this_threads_connection_quietly()
            return did
        self.database.reachable()
        return did

    def busy(self) -> bool:
        """Whether any worker holds work in progress (a child, an exit to record, a run to finish)."""
        return any(worker.busy() for worker in self.workers)

    def live_children(self) -> tuple[Child, ...]:
        """The processes this supervisor started and has not reaped yet (a snapshot)."""
        return self.table.live()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop everything this supervisor runs: runs first, then SuperNodes, then SuperLinks
        (a SuperLink waits for its run), then the pipe reader and the log writer. Once."""
        if self.shutting_down:
            return
        self.shutting_down = True
        if timeout is None:
            timeout = 3 * settings.STOP_TIMEOUT_SECONDS + SUPERLINK_STOP_WAIT_FOR_RUN + 15  # the steps below
        self.enrollments.accepting = False
        deadline = time.monotonic() + timeout
        # Each step bounded; whatever is left when the time is up is killed below.
        steps: tuple[tuple[Callable[[], None], Callable[[], bool], float], ...] = (
            (
                self.runs.begin_shutdown,
                lambda: self.runs.busy() or self.finisher.busy(),
                SUPERLINK_STOP_WAIT_FOR_RUN + settings.STOP_TIMEOUT_SECONDS,
            ),
            (
                lambda: self.sessions.begin_shutdown(superlinks=False),
                lambda: self.sessions.busy(superlinks=False),
                settings.STOP_TIMEOUT_SECONDS + 5,
            ),
            (self.sessions.begin_shutdown, self.busy, timeout),
        )
        for begin, busy, budget in steps:
            try:
                close_old_connections()
                begin()
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                self.database.unreachable(exc)
            if self.database.down:
                # No row can say "stop": signal the processes ourselves, in the same order. Their
                # rows stay as they are; the next supervisor's start-up reconcile closes them.
                logger.error("shutting down while the database is unreachable: the next start reconciles the rows")
                self._terminate_in_order(max(0.0, deadline - time.monotonic()))
                break
            self._step_while(busy, min(deadline, time.monotonic() + budget))
        for child in self.live_children():
            procs.signal_group(child.pid, signal.SIGKILL)
        self._step_while_busy(KILL_WAIT)
        self.reaper.sweep_orphans_until_none(time.monotonic() + KILL_WAIT)
        self.writer.flush(timeout=KILL_WAIT)  # a journal still waiting stays on disk for the next start
        try:
            services.supervisor_mark_stopped(supervisor_id=self.id)
        except Exception as exc:
            if not is_database_outage(exc):
                raise
        self.table.reader.stop()
        self.writer.stop()
        self.writer.join(timeout=10)
        self.table.reader.join(timeout=5)

    def _terminate_in_order(self, timeout: float) -> None:
        """`flwr run`, then SuperNodes, then SuperLinks: each group SIGTERMed and waited for (bounded)."""
        deadline = time.monotonic() + timeout
        groups: tuple[Callable[[Child], bool], ...] = (
            lambda c: c.context.role is ChildRole.RUN,
            lambda c: c.context.role is ChildRole.SESSION and c.context.source != "superlink",
            lambda c: True,
        )
        for in_group in groups:
            members = [c for c in self.live_children() if in_group(c)]
            for child in members:
                if child.alive and child.term_sent_at is None:
                    self.table.terminate(child)
            while time.monotonic() < deadline and any(c.alive for c in members):
                if not self.step():
                    self._nap(0.05)

    def _step_while_busy(self, timeout: float) -> None:
        self._step_while(self.busy, time.monotonic() + timeout)

    def _step_while(self, busy: Callable[[], bool], deadline: float) -> None:
        while time.monotonic() < deadline and busy():
            if not self.step():
                self._nap(0.05)

    def _nap(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _on_lines_saved(self, owner: Owner, lines: list[Line]) -> None:
        """The log writer's hook, on its thread: hand saved lines to the workers that read them."""
        self.runs.on_lines_saved(owner, lines)


def _close_this_threads_connection() -> None:
    # Looked up at each call: `connection.close` bound once would be the constructing thread's.
    connection.close()


def _close_this_threads_connection_quietly() -> None:
    try:
        connection.close()
    except Exception:  # a broken connection may fail to close; it is dropped all the same
        logger.debug("closing a broken connection failed", exc_info=True)
