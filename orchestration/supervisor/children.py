"""The table of live children: the one way a worker starts a process, and where the pipes' lines go."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path

from django.utils import timezone

from orchestration import procs
from orchestration.logpipe import Line, LogWriter, Owner
from orchestration.models import LogStream
from orchestration.supervisor.common import CONTROL_TIMEOUT, Child, ChildContext, ChildRole, ExitReport
from orchestration.supervisor.launcher import Command, Launcher

logger = logging.getLogger(__name__)


class ChildTable:
    """Every process this supervisor started and has not reaped yet.

    `_children` is guarded by `_lock`: the loop spawns and reaps, the reconcile thread spawns
    control commands, and the orphan sweep reads it. Spawning and registering happen under the
    same lock, so the sweep never mistakes a new child for an orphan. A child's signal
    bookkeeping (`term_sent_at`, `kill_sent_at`) is written on the loop thread only.
    """

    def __init__(self, *, launcher: Launcher, writer: LogWriter) -> None:
        self.launcher = launcher
        self.writer = writer
        self.reader = procs.PipeReader(on_line=self._on_line)
        self._children: dict[int, Child] = {}
        self._lock = threading.Lock()
        # Control commands that opened their run's log (it was closed): they close it when they end.
        self._opened_log: set[int] = set()

    def spawn(self, command: Command, *, label: str, context: ChildContext, log_path: Path | None = None) -> Child:
        """Start `command` through the launcher; its lines go to `context.owner`'s log (and file)."""
        opened = context.owner is not None and self.writer.open(context.owner, log_path)
        try:
            with self._lock:
                child = self.launcher.start(command, label=label, context=context)
                self._children[child.pid] = child
                if opened and context.role is ChildRole.CONTROL:
                    self._opened_log.add(child.pid)
        except BaseException:
            if opened and context.owner is not None:
                self.writer.close_owner(context.owner)
            raise
        if context.owner is not None:
            self.system(context.owner, context.source, f"[fedml] started pid {child.pid}: {' '.join(child.argv)}")
        self.reader.add(child)
        return child

    def submit(
        self,
        command: Command,
        *,
        label: str,
        subject_id: str,
        owner: Owner | None = None,
        log_path: Path | None = None,
        timeout: float = CONTROL_TIMEOUT,
    ) -> Future[list[str]]:
        """Start a short command and return its output, once it exited, as a future.

        From any thread. The future is resolved when the loop has reaped the command and read
        its pipes to the end (or with the exception that kept it from starting). A command
        still running after `timeout` is killed by the loop.
        """
        future: Future[list[str]] = Future()
        context = ChildContext(
            role=ChildRole.CONTROL,
            subject_id=subject_id,
            source="control",
            owner=owner,
            on_exit=lambda report: future.set_result(report.output),
            capture=[],
            deadline=time.monotonic() + timeout,
        )
        try:
            self.spawn(command, label=label, context=context, log_path=log_path)
        except (OSError, ValueError) as exc:
            logger.exception("could not start %s", label)
            future.set_exception(exc)
        return future

    def reap(self) -> list[Child]:
        """Reap every exited child (ours, and orphans adopted as subreaper) without blocking."""
        with self._lock:
            ended = procs.reap_all(self._children)
            for child in ended:
                del self._children[child.pid]
        return ended

    def live(self) -> tuple[Child, ...]:
        """A snapshot of the children not reaped yet."""
        with self._lock:
            return tuple(self._children.values())

    @contextlib.contextmanager
    def registry_locked(self) -> Iterator[set[int]]:
        """The pids of our children, held still: nothing is spawned until the block ends."""
        with self._lock:
            yield set(self._children)

    def terminate(self, child: Child) -> None:
        """SIGTERM to its process group; the reaper escalates to SIGKILL after the stop timeout."""
        child.term_sent_at = time.monotonic()
        procs.signal_group(child.pid, signal.SIGTERM)

    def system(self, owner: Owner, source: str, text: str) -> None:
        """A line of FedML's own in a child's log (`stream` system)."""
        self.writer.put(Line(owner=owner, stream=LogStream.SYSTEM, source=source, ts=timezone.now(), text=text))

    def _on_line(self, child: Child, stream: str, ts: datetime, text: str) -> None:
        # The pipe reader's thread: the context is frozen; `capture` is this thread's until EOF.
        context = child.context
        if context.streamed is not None and not context.streamed.keep(stream, text):
            return  # a replayed line that is saved already
        if context.capture is not None:
            context.capture.append(text)
        if context.owner is not None:
            self.writer.put(Line(owner=context.owner, stream=stream, source=context.source, ts=ts, text=text))

    def report_exit(self, child: Child, *, recent_lines: int) -> None:
        """Say how it ended in its log and hand the exit to whoever spawned it (loop thread).

        Sessions' and runs' exits are handed over behind their last line, in the writer, so a
        row never says "ended" before its last line is saved; then their log is closed.
        """
        context = child.context
        owner = context.owner
        if owner is None:
            context.on_exit(ExitReport(child=child, last_lines=[], output=list(context.capture or [])))
            return
        self.system(owner, context.source, f"[fedml] pid {child.pid} {child.describe_exit()}")

        with self._lock:
            opened_log = child.pid in self._opened_log
            self._opened_log.discard(child.pid)
        # A control command only borrows its run's log, unless nobody else had it open.
        closes = context.role is not ChildRole.CONTROL or opened_log

        def hand_over() -> None:
            last = self.writer.recent(owner)[-recent_lines:]
            if closes:  # before the hand-over: whoever gets the exit may open the log again
                self.writer.close_now(owner)
            context.on_exit(ExitReport(child=child, last_lines=last, output=list(context.capture or [])))

        self.writer.barrier(hand_over)
