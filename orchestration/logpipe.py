"""The log pipeline: lines from children are saved in batches (file and database) before
anything else sees them. Sequence numbers are gap-free per session or run; this writer is
the only one assigning them for the owners its supervisor claimed.

When the database does not answer, lines are journalled (orchestration/journal.py) with their
numbers and back-filled, in order, once it does (retried with backoff): none is dropped, and
barriers (an exit handed over behind a child's last line, a log closed) wait for the back-fill.

Django-free: the database comes in as callables (the supervisor passes
`services.log_lines_append` and `selectors.log_last_seq`), so this module is a leaf.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from orchestration.journal import Entry, Journal, journal_name, parse_journal_name
from orchestration.private_files import open_private_append, private_dirs

logger = logging.getLogger(__name__)

BATCH_MAX = 2000
BATCH_WAIT = 0.05
RETRY_FIRST = 0.05  # after a failed append, the first wait before the journal is back-filled
RETRY_MAX = 5.0  # the wait doubles up to this


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
    def __init__(
        self, owner: Owner, path: Path | None, *, saved: int, journal: Journal | None, recent_lines: int
    ) -> None:
        self.owner = owner
        self.file: TextIO | None = None
        if path is not None:
            self.file = open_private_append(path)  # held open for the child's life
        self.saved = saved  # the last number in the database
        self.journal = journal  # lines not in the database yet, if any
        self.seq = max(saved, journal.last_seq if journal else 0)  # the last number given
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
        journal_dir: Path | None = None,
    ) -> None:
        super().__init__(name="log-writer", daemon=True)
        # Where lines wait for the database (the supervisor passes `$FEDML_DATA_DIR/journal`).
        self.journal_dir = journal_dir or Path(tempfile.mkdtemp(prefix="fedml-journal-"))
        private_dirs(self.journal_dir)
        # This thread's alone: outage backoff, and barriers waiting for the back-fill.
        self._retry_at: float | None = None  # set while the database does not answer
        self._retry_wait = RETRY_FIRST
        self._deferred: deque[Marker] = deque()
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
        self.lines_journalled = 0  # of those, how many waited for the database

    # -- called from other threads
    def open(self, owner: Owner, path: Path | None) -> bool:
        """Start taking `owner`'s lines (and appending them to `path`); False if it was open already."""
        with self._lock:
            if owner.key in self._sinks:
                return False
        # Read outside the lock, so a slow query never holds up the writer; the first open wins.
        saved = self._last_seq(**_ids(owner))
        with self._lock:
            if owner.key in self._sinks:
                return False
            left = self.journal_dir / journal_name(owner.kind, owner.id)
            journal = Journal.reopen(left) if left.exists() else None
            self._sinks[owner.key] = _Sink(owner, path, saved=saved, journal=journal, recent_lines=self._recent_lines)
            return True

    def recover(self) -> list[Owner]:
        """Back-fill the journals an earlier supervisor left (it stopped, or died, during an outage).

        Call before `start`: the owners are opened (their numbering continues from the journal),
        back-filled by the writer thread as soon as the database answers, then closed."""
        owners = []
        for path in sorted(self.journal_dir.glob("*.jsonl")):
            parsed = parse_journal_name(path.name)
            if parsed is None:
                continue
            owner = Owner(parsed[0], parsed[1])  # type: ignore[arg-type]
            self.open(owner, None)
            self.close_owner(owner)
            owners.append(owner)
        return owners

    def put(self, line: Line) -> None:
        self.queue.put(line)

    def barrier(self, callback: Callable[[], None]) -> None:
        self.queue.put(Marker(callback))

    def close_owner(self, owner: Owner) -> None:
        self.barrier(lambda: self.close_now(owner))

    def close_now(self, owner: Owner) -> None:
        """Close `owner`'s log at once: only from a barrier's callback (the writer's thread), where
        every line queued before is saved."""
        with self._lock:
            sink = self._sinks.pop(owner.key, None)
        if sink is not None:
            sink.close()

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
                try:
                    item = self.queue.get(timeout=self._until_retry())
                except queue.Empty:
                    self._backfill()
                    continue
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
                        self._backfill()
                        self._deferred.append(item)
                        self._run_barriers()
                    else:
                        batch.append(item)
                    if len(batch) >= BATCH_MAX:
                        break
                    remaining = deadline - time.monotonic()
                    if batch and remaining <= 0:
                        break
                    try:
                        item = self.queue.get(timeout=remaining if batch else self._until_retry())
                    except queue.Empty:
                        break
                self._save(batch)
                self._backfill()
                if stop:
                    if self._journalling():
                        logger.warning("log writer stopped with lines journalled: the next supervisor back-fills them")
                    return
        finally:
            with self._lock:
                for sink in self._sinks.values():
                    sink.close()
                    if sink.journal is not None:
                        sink.journal.close()  # kept on disk for the next supervisor
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
            # Straight to the database unless it is known not to answer or this owner's earlier
            # lines still wait in its journal (they go first).
            saved = False
            if sink.journal is None and self._retry_at is None:
                try:
                    self._append(**_ids(sink.owner), first_seq=sink.seq + 1, lines=lines, recent=recent)
                    saved = True
                except Exception:
                    self._failed()
            if saved:
                sink.seq += len(lines)
                sink.saved = sink.seq
            else:
                self._journal(sink, lines)
            self.lines_written += len(lines)
            self._call_on_saved(sink.owner, lines)

    def _call_on_saved(self, owner: Owner, lines: list[Line]) -> None:
        hook = self._on_saved
        if hook is not None:
            self._call(lambda: hook(owner, lines))

    def _journal(self, sink: _Sink, lines: list[Line]) -> None:
        if sink.journal is None:
            sink.journal = Journal(self.journal_dir / journal_name(sink.owner.kind, sink.owner.id))
        first = sink.seq + 1
        sink.journal.write(
            [
                Entry(seq=first + i, stream=line.stream, source=line.source, ts=line.ts, text=line.text)
                for i, line in enumerate(lines)
            ]
        )
        sink.seq += len(lines)
        self.lines_journalled += len(lines)

    # -- outages: journals, backoff, back-fill (this thread)
    def _failed(self) -> None:
        if self._retry_at is None:
            logger.warning("saving log lines failed: journalling them until the database answers", exc_info=True)
            self._retry_wait = RETRY_FIRST
        else:
            self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
        self._retry_at = time.monotonic() + self._retry_wait
        self._release()

    def _journalling(self) -> list[_Sink]:
        with self._lock:
            return [sink for sink in self._sinks.values() if sink.journal is not None]

    def _until_retry(self) -> float | None:
        """How long the thread may wait for a line before back-filling (None: no journal waits)."""
        if not self._journalling() and self._retry_at is None:
            return None
        return max(0.0, (self._retry_at or 0.0) - time.monotonic())

    def _backfill(self) -> None:
        """Back-fill every journal into the database if a retry is due; then run waiting barriers."""
        journalling = self._journalling()
        if not journalling and self._retry_at is None:
            self._run_barriers()
            return
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return
        self._before_batch()
        for sink in journalling:
            if not self._backfill_one(sink):
                self._failed()
                return
        if self._retry_at is not None:
            logger.warning("the database answers again: journalled log lines are back-filled")
        self._retry_at = None
        self._run_barriers()

    def _backfill_one(self, sink: _Sink) -> bool:
        journal = sink.journal
        assert journal is not None
        while True:
            entries, offset = journal.peek(BATCH_MAX)
            fresh = [entry for entry in entries if entry.seq > sink.saved]  # a restart may find some saved
            if fresh:
                lines = [Line(owner=sink.owner, stream=e.stream, source=e.source, ts=e.ts, text=e.text) for e in fresh]
                with self._lock:
                    recent = "\n".join(sink.recent)
                try:
                    self._append(**_ids(sink.owner), first_seq=fresh[0].seq, lines=lines, recent=recent)
                except Exception:
                    return False
                sink.saved = fresh[-1].seq
            journal.commit(offset)
            if not entries:
                break
        journal.remove()
        sink.journal = None
        sink.seq = max(sink.seq, sink.saved)
        return True

    def _run_barriers(self) -> None:
        """Barriers run in order, and only once no line queued before them waits in a journal."""
        while self._deferred and not self._journalling() and self._retry_at is None:
            self._call(self._deferred.popleft().callback)
