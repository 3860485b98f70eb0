"""Shared, per-process tails of the database feeds that websocket consumers follow.

The database is the record. A Tail keeps the newest items of one feed (a session's or run's
log lines, a project's events) in memory so that 100 followers of one process cost one query
per refresh, not 100. Refreshes are single-flight and happen on a doorbell ring or, since rings
can be lost (and never cross processes with the in-memory layer), on a short interval.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.db.models import Max

from orchestration import doorbell
from orchestration.models import LogLine, ProjectEvent

CACHE_ITEMS = 20_000  # newest items kept per feed
FETCH_LIMIT = 5_000
MIN_REFRESH_INTERVAL = 0.02  # seconds between two database reads of one feed


def poll_interval() -> float:
    """How long a follower waits for a ring before reading the database anyway."""
    return 1.0 if doorbell.crosses_processes() else 0.25


@dataclass(frozen=True)
class Item:
    seq: int
    obj: dict[str, Any]
    frag: str  # obj encoded once, shared by every follower


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
            obj = {"seq": seq, "stream": stream, "source": source, "ts": ts.isoformat(), "text": text}
            items.append(Item(seq, obj, encode(obj)))
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
            items.append(Item(seq, obj, encode(obj)))
        return items

    def head(self) -> int:
        return ProjectEvent.objects.filter(project_id=self.project_id).aggregate(m=Max("seq"))["m"] or 0


Feed = LogFeed | EventFeed


class Tail:
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
        self.queries += 1
        return await database_sync_to_async(self.feed.fetch)(after, limit)

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

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._last_refresh < MIN_REFRESH_INTERVAL:
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


_tails: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Tail]] = weakref.WeakKeyDictionary()


async def acquire(feed: Feed) -> Tail:
    loop = asyncio.get_running_loop()
    tails = _tails.setdefault(loop, {})
    tail = tails.get(feed.key)
    if tail is None:
        tail = tails[feed.key] = Tail(feed)
    tail.refs += 1
    await tail.start()
    return tail


def release(tail: Tail) -> None:
    tail.refs -= 1
    if tail.refs <= 0:
        tails = _tails.get(asyncio.get_running_loop(), {})
        if tails.get(tail.feed.key) is tail:
            del tails[tail.feed.key]


Transform = Callable[[Item], Item | None]
