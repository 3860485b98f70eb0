"""Shared, per-process caches of the database feeds that websocket consumers follow.

The database is the record. A feed is one gap-free sequence in it (a session's or run's log
lines, a project's events); a FeedCache keeps the newest items of one feed (a session's or run's
log lines, a project's events) in memory so that 100 followers of one process cost one query
per refresh, not 100. Refreshes are single-flight and happen on a doorbell ring or, since rings
can be lost (and never cross processes with the in-memory layer), on a short interval.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max

from orchestration import doorbell
from orchestration.models import LogLine, ProjectEvent
from orchestration.serializers import log_line_output

logger = logging.getLogger(__name__)

GROUP_REFRESH = 600.0  # re-join the doorbell group this often (layers expire memberships)
CACHE_ITEMS = 20_000  # newest items kept per feed
FETCH_LIMIT = 5_000
CHUNK = 2_000  # backlog reads are aligned to seq chunks, so followers catching up share them
CHUNKS_KEPT = 64
MIN_REFRESH_INTERVAL = 0.02  # seconds between two database reads of one feed


def poll_interval() -> float:
    """How long a follower waits for a ring before reading the database anyway."""
    return 1.0 if doorbell.crosses_processes() else 0.25


@dataclass(frozen=True)
class Item:
    seq: int
    ts: str
    frag: str  # encoded once, shared by every follower
    obj: dict[str, Any] | None = None  # kept only where a per-follower filter needs it (events)


def encode(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class LogFeed:
    def __init__(self, kind: str, owner_id: Any) -> None:
        self.kind = kind
        self.owner_id = owner_id
        self.key = f"{kind}:{owner_id}"
        self.group = doorbell.log_group(kind, owner_id)
        self._filter = {"session_id": owner_id} if kind == "session" else {"run_id": owner_id}

    def fetch(self, after: int, limit: int) -> list[Item]:
        rows = (
            LogLine.objects.filter(**self._filter, seq__gt=after)
            .order_by("seq")
            .values_list("seq", "stream", "source", "ts", "text")[:limit]
        )
        items = []
        for seq, stream, source, ts, text in rows:
            obj = log_line_output(seq=seq, stream=stream, source=source, ts=ts, text=text)
            items.append(Item(seq, obj["ts"], encode(obj)))
        return items

    def head(self) -> int:
        return LogLine.objects.filter(**self._filter).aggregate(m=Max("seq"))["m"] or 0

    def seq_before(self, ts: Any) -> int:
        """The last seq written before `ts` (where a run's window of this log starts)."""
        return LogLine.objects.filter(**self._filter, ts__lt=ts).aggregate(m=Max("seq"))["m"] or 0


class EventFeed:
    def __init__(self, project_id: Any) -> None:
        self.project_id = project_id
        self.key = f"events:{project_id}"
        self.group = doorbell.events_group(project_id)

    def fetch(self, after: int, limit: int) -> list[Item]:
        rows = (
            ProjectEvent.objects.filter(project_id=self.project_id, seq__gt=after)
            .order_by("seq")
            .values_list("seq", "type", "payload", "created_at")[:limit]
        )
        items = []
        for seq, type_, payload, created_at in rows:
            obj = {"seq": seq, "type": type_, "ts": created_at.isoformat(), "payload": payload}
            items.append(Item(seq, obj["ts"], encode(obj), obj))
        return items

    def head(self) -> int:
        return ProjectEvent.objects.filter(project_id=self.project_id).aggregate(m=Max("seq"))["m"] or 0


Feed = LogFeed | EventFeed


DISCARD_TIMEOUT = 2.0


class FeedCache:
    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.seqs: list[int] = []
        self.items: list[Item] = []
        self.head: int | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._last_refresh = 0.0
        self.refs = 0
        self.queries = 0
        self._chunks: dict[int, list[Item]] = {}  # complete backlog chunks, oldest first
        self._chunk_locks: dict[int, asyncio.Lock] = {}
        self._listener: asyncio.Task[None] | None = None

    def listen(self) -> None:
        """One doorbell subscription per feed per process, however many followers it has."""
        if self._listener is None and doorbell.crosses_processes():
            self._listener = asyncio.create_task(self._listen())

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while True:
            channel = None
            try:
                channel = await layer.new_channel()
                while True:
                    await layer.group_add(self.feed.group, channel)
                    with contextlib.suppress(TimeoutError):
                        while True:
                            await asyncio.wait_for(layer.receive(channel), GROUP_REFRESH)
                            self.ring()
            except asyncio.CancelledError:
                if channel is not None:
                    # Bounded: a layer whose connection went with an earlier event loop may never
                    # answer, and a cancelled listener must end (the group entry expires anyway).
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(layer.group_discard(self.feed.group, channel), DISCARD_TIMEOUT)
                raise
            except Exception:  # a broken layer only costs latency: followers still poll
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Asked to end, and the layer turned the cancellation into another error
                    # (channels_redis can, with state left by another event loop): end all the same.
                    raise asyncio.CancelledError from None
                logger.warning("doorbell listener for %s failed; retrying", self.feed.key, exc_info=True)
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        if self.head is None:
            async with self._lock:
                if self.head is None:
                    self.head = await database_sync_to_async(self.feed.head)()
                    self._last_refresh = time.monotonic()

    async def read(self, after: int, limit: int) -> list[Item]:
        """Items after `after`: from memory when cached, else from the database (a backlog)."""
        assert self.head is not None
        if after >= self.head:
            return []
        if self.seqs and after >= self.seqs[0] - 1:
            index = bisect.bisect_right(self.seqs, after)
            return self.items[index : index + limit]
        return await self._read_backlog(after, limit)

    async def _read_backlog(self, after: int, limit: int) -> list[Item]:
        """Older than the cached items: read the aligned chunk holding `after + 1`, once per process."""
        number = after // CHUNK
        chunk = self._chunks.get(number)
        if chunk is None:
            lock = self._chunk_locks.setdefault(number, asyncio.Lock())
            async with lock:
                chunk = self._chunks.get(number)
                if chunk is None:
                    self.queries += 1
                    chunk = await database_sync_to_async(self.feed.fetch)(number * CHUNK, CHUNK)
                    # Seqs are gap-free: a chunk is complete when it holds CHUNK items.
                    if len(chunk) == CHUNK:
                        self._chunks[number] = chunk
                        while len(self._chunks) > CHUNKS_KEPT:
                            del self._chunks[next(iter(self._chunks))]
            self._chunk_locks.pop(number, None)
        start = after - number * CHUNK
        return chunk[start : start + limit]

    def ring(self) -> None:
        self._last_refresh = 0.0  # the next wait refreshes at once
        self._changed.set()

    async def wait_beyond(self, cursor: int, timeout: float) -> None:
        """Return when the head moved past `cursor`, or after about `timeout`."""
        assert self.head is not None
        if self.head > cursor:
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        await self.refresh()

    async def refresh(self, *, force: bool = False) -> None:
        """Read what is new. `force` skips the rate limit: used before declaring a feed ended."""
        started = time.monotonic()
        async with self._lock:
            if self._last_refresh > started:
                return  # someone refreshed while we waited for the lock: that read is newer than our call
            if not force and started - self._last_refresh < MIN_REFRESH_INTERVAL:
                return
            self._last_refresh = time.monotonic()
            assert self.head is not None
            while True:
                self.queries += 1
                rows = await database_sync_to_async(self.feed.fetch)(self.head, FETCH_LIMIT)
                if rows:
                    self.seqs.extend(item.seq for item in rows)
                    self.items.extend(rows)
                    self.head = rows[-1].seq
                if len(rows) < FETCH_LIMIT:
                    break
            if len(self.items) > CACHE_ITEMS:
                cut = len(self.items) - CACHE_ITEMS
                del self.items[:cut]
                del self.seqs[:cut]
            # Wake everyone waiting on this round, then start a new round.
            self._changed.set()
            self._changed = asyncio.Event()


_caches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, FeedCache]] = weakref.WeakKeyDictionary()


async def acquire(feed: Feed) -> FeedCache:
    loop = asyncio.get_running_loop()
    caches = _caches.setdefault(loop, {})
    cache = caches.get(feed.key)
    if cache is None:
        cache = caches[feed.key] = FeedCache(feed)
    cache.refs += 1
    await cache.start()
    cache.listen()
    return cache


def release(cache: FeedCache) -> None:
    cache.refs -= 1
    if cache.refs <= 0:
        caches = _caches.get(asyncio.get_running_loop(), {})
        if caches.get(cache.feed.key) is cache:
            del caches[cache.feed.key]
        cache.stop()


Transform = Callable[[Item], Item | None]

STATUS_TTL = 1.0
_status_cache: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, tuple[float, Any]]] = (
    weakref.WeakKeyDictionary()
)
_status_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def shared_status(key: Any, fetch: Callable[[], Any], *, fresh: bool = False) -> Any:
    """One status query per key per second per process, however many followers ask.

    Without this, 100 followers of one session would each query its status every second and
    queue up in front of the log reads on the database thread.
    """
    loop = asyncio.get_running_loop()
    cache = _status_cache.setdefault(loop, {})
    lock = _status_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())
    asked = time.monotonic()
    async with lock:
        hit = cache.get(key)
        if hit is not None and (hit[0] >= asked or (not fresh and asked - hit[0] < STATUS_TTL)):
            return hit[1]
        value = await database_sync_to_async(fetch)()
        cache[key] = (time.monotonic(), value)
        return value
