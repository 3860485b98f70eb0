"""orchestration.feeds.FeedCache: one in-memory tail per feed per process, shared by its followers.

Real database rows, a real in-memory channel layer. Lines are written with bulk_create rather
than through the log service, which would ring the doorbell thread while a test has swapped the
channel layer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call
from channels.layers import InMemoryChannelLayer, get_channel_layer

from orchestration import doorbell, feeds
from orchestration.models import LogLine, NodeSession, ProjectEvent
from tests.factories import NodeSessionFactory, ProjectFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

HANG = 30  # seconds: only a hang takes this long


def long_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate limit no test outlasts. A ring marks the last read as made at monotonic time 0,
    so the limit must stay below the monotonic clock (seconds since boot) for a ring to lift it."""
    monkeypatch.setattr(feeds, "MIN_REFRESH_INTERVAL", min(600.0, time.monotonic() / 2))


class LoopbackLayer(InMemoryChannelLayer):
    """The in-memory layer under a name the feeds do not recognise as process-local.

    FeedCache subscribes to doorbells only on a layer that crosses processes (rings come from the
    doorbell thread's own event loop, which the in-memory layer cannot reach). Here the rings are
    sent from the test's own loop, so the in-memory layer can carry them to the FeedCache's listener.
    """


@pytest.fixture
def listening_layer(settings: Any) -> Iterator[InMemoryChannelLayer]:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.LoopbackLayer"}}
    assert doorbell.crosses_processes()
    yield get_channel_layer()


@sync_to_async
def running_session() -> NodeSession:
    return NodeSessionFactory(status="running")


@sync_to_async
def write_lines(session: NodeSession, first: int, count: int) -> None:
    now = datetime.now(UTC)
    LogLine.objects.bulk_create(
        LogLine(session=session, seq=seq, stream="stdout", source="test", ts=now, text=f"line {seq}")
        for seq in range(first, first + count)
    )


def seqs(items: list[feeds.Item]) -> list[int]:
    return [item.seq for item in items]


async def catch_up(tail: feeds.FeedCache, after: int, limit: int) -> list[int]:
    """What a follower does: read from its cursor until it reaches the head."""
    assert tail.head is not None
    read: list[int] = []
    cursor = after
    while cursor < tail.head:
        batch = await tail.read(cursor, limit)
        assert batch, f"no progress at {cursor}"
        read.extend(seqs(batch))
        cursor = batch[-1].seq
    return read


async def eventually(predicate: Callable[[], bool], message: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), HANG)
    except TimeoutError:
        raise AssertionError(f"timed out: {message}") from None


async def until_done(task: asyncio.Task[Any], nudge: Callable[[], Awaitable[None]]) -> None:
    """Nudge (ring) until `task` finishes: the listener may not have joined the group yet."""

    async def nudging() -> None:
        while not task.done():
            await nudge()
            await asyncio.wait({task}, timeout=0.1)

    await asyncio.wait_for(nudging(), HANG)
    await task


# ---------------------------------------------------------------- catch-up
async def test_a_follower_catches_up_from_any_seq_in_order_without_gaps() -> None:
    session = await running_session()
    await write_lines(session, 1, 5_000)  # two whole backlog chunks and a partial one
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    assert tail.head == 5_000

    for after in (0, 1_234, 1_999, 2_000, 4_999):
        assert await catch_up(tail, after, 700) == list(range(after + 1, 5_001)), after
    assert await tail.read(5_000, 700) == []

    line = json.loads((await tail.read(41, 1))[0].frag)
    assert line["seq"] == 42 and line["text"] == "line 42" and line["stream"] == "stdout" and line["source"] == "test"


async def test_new_lines_are_read_once_and_served_from_memory_to_every_follower() -> None:
    session = await running_session()
    await write_lines(session, 1, 10)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    await write_lines(session, 11, 30)

    await tail.refresh(force=True)
    queries = tail.queries
    followers = await asyncio.gather(*(catch_up(tail, 10, 7) for _ in range(20)))

    assert tail.head == 40
    assert followers == [list(range(11, 41))] * 20
    assert tail.queries == queries


# ---------------------------------------------------------------- backlog chunks
async def test_backlog_reads_are_aligned_chunks_that_concurrent_followers_share() -> None:
    session = await running_session()
    await write_lines(session, 1, 5_000)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    queries = tail.queries

    batches = await asyncio.gather(tail.read(0, 100), tail.read(10, 100), tail.read(1_500, 100), tail.read(1_999, 100))

    assert [seqs(batch) for batch in batches] == [
        list(range(1, 101)),
        list(range(11, 111)),
        list(range(1_501, 1_601)),
        [2_000],  # a backlog read ends with its chunk; the follower's next read starts the next one
    ]
    assert tail.queries == queries + 1
    assert seqs(await tail.read(2_000, 100)) == list(range(2_001, 2_101))
    assert tail.queries == queries + 2
    assert seqs(await tail.read(300, 5)) == [301, 302, 303, 304, 305]  # a complete chunk is kept
    assert tail.queries == queries + 2

    # The newest chunk is not complete yet (it may still grow): it is read again each time.
    assert seqs(await tail.read(4_000, 3)) == [4_001, 4_002, 4_003]
    assert seqs(await tail.read(4_990, 100)) == list(range(4_991, 5_001))
    assert tail.queries == queries + 4


async def test_only_the_newest_backlog_chunks_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeds, "CHUNK", 10)
    monkeypatch.setattr(feeds, "CHUNKS_KEPT", 3)
    session = await running_session()
    await write_lines(session, 1, 60)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    queries = tail.queries

    for after in (0, 10, 20, 30, 40):
        assert seqs(await tail.read(after, 10)) == list(range(after + 1, after + 11))
    assert tail.queries == queries + 5
    assert seqs(await tail.read(45, 2)) == [46, 47]  # among the 3 kept
    assert tail.queries == queries + 5
    assert seqs(await tail.read(5, 2)) == [6, 7]  # the oldest went first
    assert tail.queries == queries + 6


# ---------------------------------------------------------------- the per-feed cache bound
async def test_the_cache_keeps_the_newest_items_and_older_reads_go_to_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feeds, "CACHE_ITEMS", 100)
    monkeypatch.setattr(feeds, "FETCH_LIMIT", 40)
    session = await running_session()
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    assert tail.head == 0
    await write_lines(session, 1, 250)

    await tail.refresh(force=True)  # one refresh reads until it has caught up, FETCH_LIMIT at a time

    assert tail.head == 250
    assert tail.seqs == list(range(151, 251)) and seqs(tail.items) == tail.seqs
    queries = tail.queries
    assert seqs(await tail.read(150, 10)) == list(range(151, 161))
    assert tail.queries == queries
    assert seqs(await tail.read(149, 3)) == [150, 151, 152]  # older than the cache: the backlog
    assert tail.queries == queries + 1


# ---------------------------------------------------------------- refresh: rate limit, ring, poll
async def test_refresh_is_rate_limited_unless_rung_or_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    long_rate_limit(monkeypatch)
    session = await running_session()
    await write_lines(session, 1, 10)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    await write_lines(session, 11, 5)
    queries = tail.queries

    await tail.refresh()
    assert (tail.head, tail.queries) == (10, queries)

    tail.ring()
    await tail.refresh()
    assert (tail.head, tail.queries) == (15, queries + 1)

    await write_lines(session, 16, 5)
    await tail.refresh(force=True)
    assert (tail.head, tail.queries) == (20, queries + 2)


async def test_a_ring_wakes_a_waiting_follower_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    long_rate_limit(monkeypatch)
    session = await running_session()
    await write_lines(session, 1, 10)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    waiter = asyncio.create_task(tail.wait_beyond(10, timeout=3_600))
    await write_lines(session, 11, 5)

    tail.ring()
    await asyncio.wait_for(waiter, HANG)  # without the ring it would wait an hour

    assert tail.head == 15
    assert seqs(await tail.read(10, 100)) == [11, 12, 13, 14, 15]


async def test_a_follower_behind_the_head_does_not_wait() -> None:
    session = await running_session()
    await write_lines(session, 1, 10)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    queries = tail.queries

    await asyncio.wait_for(tail.wait_beyond(5, timeout=3_600), HANG)

    assert tail.queries == queries


async def test_without_a_ring_a_waiting_follower_reads_the_database_after_the_poll_interval() -> None:
    session = await running_session()
    await write_lines(session, 1, 10)
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    await write_lines(session, 11, 5)  # written by "another process": nobody rings here

    await asyncio.wait_for(tail.wait_beyond(10, timeout=feeds.poll_interval()), HANG)

    assert tail.head == 15


async def test_a_doorbell_through_the_channel_layer_refreshes_the_feeds_tail(
    listening_layer: InMemoryChannelLayer,
) -> None:
    session = await running_session()
    await write_lines(session, 1, 10)
    feed = feeds.LogFeed("session", session.pk)
    tail = await feeds.acquire(feed)
    try:
        waiter = asyncio.create_task(tail.wait_beyond(10, timeout=3_600))
        await write_lines(session, 11, 5)

        await until_done(waiter, lambda: listening_layer.group_send(feed.group, {"type": doorbell.RING_TYPE}))

        assert tail.head == 15
    finally:
        feeds.release(tail)


# ---------------------------------------------------------------- sharing and release
async def test_followers_of_a_feed_share_one_tail_until_the_last_one_releases_it(
    listening_layer: InMemoryChannelLayer,
) -> None:
    session, other = await running_session(), await running_session()
    feed = feeds.LogFeed("session", session.pk)
    first = await feeds.acquire(feed)
    second = await feeds.acquire(feeds.LogFeed("session", session.pk))
    elsewhere = await feeds.acquire(feeds.LogFeed("session", other.pk))
    assert second is first and elsewhere is not first
    assert first.refs == 2
    await eventually(lambda: bool(listening_layer.groups.get(feed.group)), "the tail's doorbell subscription")
    assert len(listening_layer.groups[feed.group]) == 1  # one subscription however many followers

    feeds.release(second)
    assert await feeds.acquire(feed) is first
    feeds.release(first)
    feeds.release(first)

    await eventually(lambda: not listening_layer.groups.get(feed.group), "the released tail leaves its group")
    again = await feeds.acquire(feed)
    assert again is not first and again.refs == 1
    feeds.release(again)
    feeds.release(elsewhere)
    await eventually(lambda: not listening_layer.groups, "every released tail left its group")


# ---------------------------------------------------------------- the project events feed
async def test_an_events_tail_catches_up_and_keeps_each_event_for_per_follower_filters() -> None:
    project = await sync_to_async(ProjectFactory)()
    await sync_to_async(ProjectEvent.objects.bulk_create)(
        ProjectEvent(project=project, seq=seq, type="session.status", payload={"n": seq}) for seq in range(1, 31)
    )
    tail = feeds.FeedCache(feeds.EventFeed(project.pk))
    await tail.start()

    assert await catch_up(tail, 12, 5) == list(range(13, 31))
    item = (await tail.read(0, 1))[0]
    assert item.obj is not None and item.obj["payload"] == {"n": 1} and item.obj["type"] == "session.status"
    assert json.loads(item.frag) == item.obj
