"""What the supervisor's workers share: timings, the typed context of each child, exit reports, inboxes."""

from __future__ import annotations

import enum
import logging
import queue
import re
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError

from orchestration import flower, procs
from orchestration.logpipe import Owner
from orchestration.models import NodeSession
from orchestration.runtime_config import connect_host, superlink_config

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.2
HEARTBEAT_INTERVAL = 1.0
STATUS_POLL_INTERVAL = 2.0  # between two `flwr ls` while a run finishes
RUN_STOP_GRACE = 8.0  # after `flwr stop`, how long `flwr run` may take to exit by itself
SUPERLINK_STOP_WAIT_FOR_RUN = 20.0
SUPERLINK_READY_TIMEOUT = 20.0  # a run waits this long for its SuperLink to listen
ORPHAN_SWEEP_INTERVAL = 1.0
ENROLL_RETRY_SECONDS = 30.0  # before a failed revocation is tried again
EOF_WAIT = 5.0  # after a child is reaped, how long its pipes may take to reach EOF
CONTROL_TIMEOUT = 60.0  # a short `flwr` command still running after this is killed
DETAIL_TAIL_LINES = 20  # last log lines quoted in a failed row's status_detail
DB_RETRY_FIRST = 0.2  # after a pass met an unreachable database, the first wait before the next
DB_RETRY_MAX = 5.0  # the wait doubles up to this


def is_database_outage(exc: BaseException) -> bool:
    """The database cannot be reached (refused, restarting, pool exhausted, SQLite locked): the
    write is retried later, never given up. Integrity and programming errors are not outages."""
    return isinstance(exc, (OperationalError, InterfaceError))


def log_unless_outage(exc: BaseException, message: str, *args: Any) -> None:
    """A handler's `except Exception`: an outage propagates (the pass is retried); the rest is logged."""
    if is_database_outage(exc):
        raise exc
    logger.exception(message, *args)


class Worker(Protocol):
    """One job of the supervisor. The loop calls `step()` on its own thread, over and over."""

    def step(self) -> bool:
        """Do what is due now, without blocking; say whether anything was done."""
        ...

    def busy(self) -> bool:
        """Whether work is in progress that a shutdown must wait for."""
        ...


class ChildRole(enum.Enum):
    SESSION = "session"  # a SuperLink or SuperNode: its row follows the process
    RUN = "run"  # `flwr run`: its exit hands the run to the finisher
    CONTROL = "control"  # a short `flwr` command whose output is its result


@dataclass(frozen=True)
class ExitReport:
    """A child that exited, reported once its last line is saved."""

    child: Child
    last_lines: list[str]  # its owner's last lines (sessions and runs)
    output: list[str]  # everything it printed (control commands)


@dataclass(frozen=True)
class ChildContext:
    """What the supervisor knows about a child. Frozen: the pipe reader reads it without a lock."""

    role: ChildRole
    subject_id: str  # the session, run or enrollment it serves
    source: str  # `log_lines.source` of its lines
    owner: Owner | None  # whose log its lines go to; None: not logged
    # Called once its last line is saved, on the loop or the writer thread: it must only hand over.
    on_exit: Callable[[ExitReport], None]
    # Control commands' output: appended by the pipe reader, read once its pipes reached EOF.
    capture: list[str] | None = None
    deadline: float | None = None  # monotonic time after which it is killed (control commands)
    # `flwr run`/`flwr log`: the run's log lines it streamed, and which of a replay's are logged.
    streamed: flower.StreamedLines | None = None


Child = procs.Child[ChildContext]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Hands results from other threads to one worker: `put` from any thread, `process` on the loop's.

    A put wakes the loop, so a result waits for no poll interval.
    """

    def __init__(self, wake: threading.Event) -> None:
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._wake = wake
        self._held: deque[T] = deque()  # loop thread only: taken, not handled yet

    def process(self, handle: Callable[[T], None]) -> bool:
        """Hand each item to `handle`, in order. An item whose handling met a database outage
        stays first in line, with every item behind it, and the outage propagates: the next
        pass hands it over again (so `handle` must be safe to repeat up to its first write)."""
        self._held.extend(self.drain())
        did = False
        while self._held:
            handle(self._held[0])
            self._held.popleft()
            did = True
        return did

    def put(self, item: T) -> None:
        self._queue.put(item)
        self._wake.set()

    def drain(self) -> list[T]:
        items: list[T] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def empty(self) -> bool:
        return self._queue.empty() and not self._held


class Owed:
    """Writes owed to the database for something already done (a process spawned, a run claimed).

    Kept in order and made first on every pass, so an outage between the deed and its row never
    loses the row: the supervisor's first worker settles them (loop thread only).
    """

    def __init__(self) -> None:
        self._calls: deque[tuple[str, Callable[[], object]]] = deque()
        self._settling = False

    def do(self, what: str, call: Callable[[], object]) -> None:
        """Make the write now, or after those owed before it; an outage propagates once it is queued."""
        self.queue(what, call)
        if not self._settling:
            self.settle()

    def queue(self, what: str, call: Callable[[], object]) -> None:
        """Owe it without making it yet (several queued together are all kept through an outage)."""
        self._calls.append((what, call))

    def settle(self) -> bool:
        did = False
        self._settling = True
        try:
            while self._calls:
                what, call = self._calls[0]
                try:
                    call()
                except Exception as exc:
                    log_unless_outage(exc, "could not %s", what)
                self._calls.popleft()
                did = True
        finally:
            self._settling = False
        return did

    def step(self) -> bool:
        return self.settle()

    def busy(self) -> bool:
        return bool(self._calls)


def superlink_listening(superlink: NodeSession | None) -> bool:
    """Whether the SuperLink accepts connections yet (it takes a few seconds after spawning)."""
    if superlink is None:
        return False
    cfg = superlink_config(superlink)
    try:
        with socket.create_connection((connect_host(cfg.host), cfg.port), timeout=0.2):
            return True
    except OSError:
        return False


def rotate_log(path: Path) -> None:
    """`logs/superlink.log` is always the current process; earlier ones keep a timestamp."""
    if path.exists() and path.stat().st_size:
        stamp = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}")
            n += 1
        path.rename(target)


def uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def project_file_suffix(project: Any) -> str:
    """What a project adds to its log file names; the default project keeps the historical names."""
    if project.slug == settings.PROJECT_SLUG:
        return ""
    return f"-{re.sub(r'[^a-z0-9-]+', '-', project.slug.lower())[:40].strip('-')}-{str(project.pk)[:8]}"


def shares_app_config(project: Any) -> bool:
    """Only the default project's runs write `current-run-id` into the app's pyproject (the seed's
    behaviour). Every run gets its id as a `--run-config` override, so projects never share it."""
    return project.slug == settings.PROJECT_SLUG


def clear_current_run_id(run_id: Any) -> None:
    """Set the app's `current-run-id` back to none, if it still names this run.

    A broken app directory must not stop the supervisor: the row still ends, saying why.
    """
    try:
        flower.set_current_run_id(settings.FLOWER_APP_DIR, "", only_if=str(run_id))
    except (OSError, KeyError, ValueError):
        logger.exception("could not clear current-run-id for run %s", run_id)


def telemetry_dir(superlink_session_id: Any) -> Path:
    """Where a SuperLink's ServerApps write their runs' telemetry (`FEDML_TELEMETRY_DIR`)."""
    return Path(settings.DATA_DIR) / "telemetry" / f"superlink-{superlink_session_id}"
