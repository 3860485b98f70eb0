"""The log pipeline: lines from children are saved in batches (file and database) before
anything else sees them. Sequence numbers are gap-free per session or run; this writer is
the only one assigning them for the owners its supervisor claimed.

Django-free: the database comes in as callables (the supervisor passes
`services.log_lines_append` and `selectors.log_last_seq`), so this module is a leaf.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from orchestration.private_files import open_private_append

logger = logging.getLogger(__name__)

BATCH_MAX = 2000
BATCH_WAIT = 0.05
APPEND_ATTEMPTS = 5


@dataclass(frozen=True)
class Owner:
    """Whose log a line belongs to: a node session or a run."""

    kind: Literal["session", "run"]
    id: Any

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Line:
    owner: Owner
    stream: str
    source: str
    ts: datetime
    text: str


@dataclass(frozen=True)
class Marker:
    """Runs `callback` in the writer after every line queued before it is saved."""

    callback: Callable[[], None]


class AppendBatch(Protocol):
    """Saves one owner's batch in one transaction (`services.log_lines_append`).

    `lines` are `Line`s: they carry the stream, source, ts and text that function reads.
    """

    def __call__(self, *, session_id: Any, run_id: Any, first_seq: int, lines: list[Line], recent: str) -> None: ...


class LastSeq(Protocol):
    """The highest sequence number already saved for an owner (`selectors.log_last_seq`)."""

    def __call__(self, *, session_id: Any = None, run_id: Any = None) -> int: ...


LineHook = Callable[[Owner, list[Line]], None]


def _nothing() -> None:
    return None


def _ids(owner: Owner) -> dict[str, Any]:
    return (
        {"session_id": owner.id, "run_id": None}
        if owner.kind == "session"
        else {"session_id": None, "run_id": owner.id}
    )


class _Sink:
    def __init__(self, owner: Owner, path: Path | None, *, first_seq: int, recent_lines: int) -> None:
        self.owner = owner
        self.file: TextIO | None = None
        if path is not None:
            self.file = open_private_append(path)  # held open for the child's life
        self.seq = first_seq
        self.recent: deque[str] = deque(maxlen=recent_lines)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class LogWriter(threading.Thread):
    """One thread that saves every child's lines in batches (up to BATCH_MAX lines or BATCH_WAIT).

    `before_batch` runs before each batch and `release` after a failed append and when the
    thread ends: the supervisor passes Django's connection housekeeping, which this leaf must
    not know.
    """

    def __init__(
        self,
        *,
        append: AppendBatch,
        last_seq: LastSeq,
        recent_lines: int,
        on_saved: LineHook | None = None,
        before_batch: Callable[[], None] = _nothing,
        release: Callable[[], None] = _nothing,
    ) -> None:
        super().__init__(name="log-writer", daemon=True)
        self.queue: queue.SimpleQueue[Line | Marker | None] = queue.SimpleQueue()
        # Opened from the supervisor's threads, used by this one: guarded by `_lock`. A sink's
        # seq and file are this thread's alone; its recent lines are read under the lock.
        self._sinks: dict[str, _Sink] = {}
        self._lock = threading.Lock()
        self._append = append
        self._last_seq = last_seq
        self._recent_lines = recent_lines
        self._on_saved = on_saved
        self._before_batch = before_batch
        self._release = release
        self.lines_written = 0  # this thread's counter; read by tests and benchmarks

    # -- called from other threads
    def open(self, owner: Owner, path: Path | None) -> None:
        """Start taking `owner`'s lines (and appending them to `path`); a no-op if already open."""
        with self._lock:
            if owner.key in self._sinks:
                return
        # Read outside the lock, so a slow query never holds up the writer; the first open wins.
        first = self._last_seq(**_ids(owner))
        with self._lock:
            if owner.key not in self._sinks:
                self._sinks[owner.key] = _Sink(owner, path, first_seq=first, recent_lines=self._recent_lines)

    def put(self, line: Line) -> None:
        self.queue.put(line)

    def barrier(self, callback: Callable[[], None]) -> None:
        self.queue.put(Marker(callback))

    def close_owner(self, owner: Owner) -> None:
        def _close() -> None:
            with self._lock:
                sink = self._sinks.pop(owner.key, None)
            if sink is not None:
                sink.close()

        self.barrier(_close)

    def recent(self, owner: Owner) -> list[str]:
        with self._lock:
            sink = self._sinks.get(owner.key)
            return list(sink.recent) if sink else []

    def stop(self) -> None:
        self.queue.put(None)

    def flush(self, timeout: float = 10.0) -> bool:
        done = threading.Event()
        self.barrier(done.set)
        return done.wait(timeout)

    # -- the writer thread
    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                batch: list[Line] = []
                stop = False
                # A batch closes after BATCH_WAIT from its first line (bounded latency) or at
                # BATCH_MAX lines (bounded size), whichever comes first.
                deadline = time.monotonic() + BATCH_WAIT
                while True:
                    if item is None:
                        stop = True
                        break
                    if isinstance(item, Marker):
                        self._save(batch)
                        batch = []
                        self._call(item.callback)
                    else:
                        batch.append(item)
                    if len(batch) >= BATCH_MAX:
                        break
                    remaining = deadline - time.monotonic()
                    if batch and remaining <= 0:
                        break
                    try:
                        item = self.queue.get(timeout=remaining if batch else None)
                    except queue.Empty:
                        break
                self._save(batch)
                if stop:
                    return
        finally:
            with self._lock:
                for sink in self._sinks.values():
                    sink.close()
            self._release()

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # a failing callback must not stop the log pipeline
            logger.exception("log writer callback failed")

    def _save(self, batch: list[Line]) -> None:
        if not batch:
            return
        self._before_batch()
        by_owner: dict[str, list[Line]] = {}
        for line in batch:
            by_owner.setdefault(line.owner.key, []).append(line)
        for key, lines in by_owner.items():
            with self._lock:
                sink = self._sinks.get(key)
            if sink is None:
                logger.error("dropping %d lines for unknown owner %s", len(lines), key)
                continue
            if sink.file is not None:
                sink.file.write("".join(f"{line.text}\n" for line in lines))
                sink.file.flush()
            with self._lock:
                sink.recent.extend(line.text for line in lines)
                recent = "\n".join(sink.recent)
            self._append_with_retry(sink.owner, first_seq=sink.seq + 1, lines=lines, recent=recent)
            sink.seq += len(lines)
            self.lines_written += len(lines)
            self._call_on_saved(sink.owner, lines)

    def _call_on_saved(self, owner: Owner, lines: list[Line]) -> None:
        hook = self._on_saved
        if hook is not None:
            self._call(lambda: hook(owner, lines))

    def _append_with_retry(self, owner: Owner, *, first_seq: int, lines: list[Line], recent: str) -> None:
        for attempt in range(APPEND_ATTEMPTS):
            try:
                self._append(**_ids(owner), first_seq=first_seq, lines=lines, recent=recent)
                return
            except Exception:
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
                logger.exception("saving log lines failed; retrying")
                self._release()
