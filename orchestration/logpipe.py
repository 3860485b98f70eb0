"""The log pipeline: lines from children are saved in batches (file and database) before
anything else sees them. Sequence numbers are gap-free per session or run; this writer is
the only one assigning them for the owners its supervisor claimed.
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
from typing import Any, TextIO

from django.conf import settings
from django.db import close_old_connections, connection

from orchestration import selectors, services

logger = logging.getLogger(__name__)

BATCH_MAX = 2000
BATCH_WAIT = 0.05


@dataclass(frozen=True)
class Owner:
    kind: str  # "session" | "run"
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


class _Sink:
    def __init__(self, owner: Owner, path: Path | None) -> None:
        self.owner = owner
        self.path = path
        self.file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the child's life
        if owner.kind == "session":
            self.seq = selectors.log_last_seq(session_id=owner.id)
        else:
            self.seq = selectors.log_last_seq(run_id=owner.id)
        self.tail: deque[str] = deque(maxlen=settings.LOG_TAIL_LINES)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


LineHook = Callable[[Owner, list[Line]], None]


class LogWriter(threading.Thread):
    def __init__(self, on_saved: LineHook | None = None) -> None:
        super().__init__(name="log-writer", daemon=True)
        self.queue: queue.SimpleQueue[Line | Marker | None] = queue.SimpleQueue()
        self._sinks: dict[str, _Sink] = {}
        self._lock = threading.Lock()
        self._on_saved = on_saved
        self.lines_written = 0

    # -- called from other threads
    def open(self, owner: Owner, path: Path | None) -> None:
        with self._lock:
            if owner.key not in self._sinks:
                self._sinks[owner.key] = _Sink(owner, path)

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

    def tail(self, owner: Owner) -> list[str]:
        with self._lock:
            sink = self._sinks.get(owner.key)
            return list(sink.tail) if sink else []

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
            connection.close()

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # a failing callback must not stop the log pipeline
            logger.exception("log writer callback failed")

    def _save(self, batch: list[Line]) -> None:
        if not batch:
            return
        close_old_connections()
        by_owner: dict[str, list[Line]] = {}
        for line in batch:
            by_owner.setdefault(line.owner.key, []).append(line)
        for key, lines in by_owner.items():
            with self._lock:
                sink = self._sinks.get(key)
            if sink is None:
                logger.error("dropping %d lines for unknown owner %s", len(lines), key)
                continue
            first = sink.seq + 1
            if sink.file is not None:
                sink.file.write("".join(f"{line.text}\n" for line in lines))
                sink.file.flush()
            sink.tail.extend(line.text for line in lines)
            owner = sink.owner
            new_lines = [services.NewLogLine(stream=x.stream, source=x.source, ts=x.ts, text=x.text) for x in lines]
            for attempt in range(5):
                try:
                    services.log_lines_append(
                        session_id=owner.id if owner.kind == "session" else None,
                        run_id=owner.id if owner.kind == "run" else None,
                        first_seq=first,
                        lines=new_lines,
                        tail="\n".join(sink.tail),
                    )
                    break
                except Exception:
                    if attempt == 4:
                        raise
                    logger.exception("saving log lines failed; retrying")
                    connection.close()
            sink.seq += len(lines)
            self.lines_written += len(lines)
            if self._on_saved is not None:
                self._call(lambda owner=owner, lines=lines: self._on_saved(owner, lines))
