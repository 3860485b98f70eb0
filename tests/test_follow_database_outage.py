"""A websocket follow through a database outage: the follower's reads are retried (the client
ends with every line), and past the retry window the socket closes 1011 saying where it stopped,
so a client resuming with `after=` misses nothing. The real database is made unreachable
(tests/outage_kit.py); nothing is patched but the length of the retry window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async as sync_to_async

from orchestration.consumers import follow as follow_protocol
from orchestration.models import NodeSession
from tests.factories import NodeSessionFactory
from tests.outage_kit import unreachable_database
from tests.ws import append_lines, collect_lines, connect, make_user, receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@sync_to_async
def running_session() -> NodeSession:
    return NodeSessionFactory(status="running")


@sync_to_async
def end_session(session: NodeSession) -> None:
    NodeSession.objects.filter(pk=session.pk).update(status="exited", exit_code=0)


class Outage:
    """`unreachable_database()` entered and left on the thread Django's async code runs queries on."""

    def __init__(self) -> None:
        self._context = unreachable_database()
        self.active = False

    async def begin(self) -> None:
        await sync_to_async(self._context.__enter__)()
        self.active = True

    async def end(self) -> None:
        await sync_to_async(self._context.__exit__)(None, None, None)
        self.active = False


@pytest.fixture
def outage() -> Iterator[Outage]:
    made = Outage()
    yield made
    if made.active:  # a failed test still gives the database back
        made._context.__exit__(None, None, None)


async def _until(condition, what: str) -> None:  # noqa: ANN001
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.05)  # polling an observable condition, bounded only to catch a hang
    raise AssertionError(f"never happened: {what}")


async def test_a_follower_rides_out_an_outage_and_ends_with_every_line(outage, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="orchestration.consumers.follow")
    session = await running_session()
    await append_lines(session, 1, 50)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    before, _ = await collect_lines(ws, until_seq=50)

    await outage.begin()
    await _until(lambda: any("retrying" in r.getMessage() for r in caplog.records), "a read to fail and be retried")
    await outage.end()
    await append_lines(session, 51, 50)
    after, _ = await collect_lines(ws, until_seq=100, received_before=50)
    await end_session(session)
    eof = await receive(ws)

    assert [line["seq"] for line in before + after] == list(range(1, 101))
    assert eof["type"] == "eof" and eof["last_seq"] == 100
    await ws.disconnect()


async def test_past_the_retry_window_the_socket_closes_1011_and_a_resume_misses_nothing(outage, monkeypatch) -> None:
    monkeypatch.setattr(follow_protocol, "PUMP_RETRY_FOR", 0.5)
    session = await running_session()
    await append_lines(session, 1, 30)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    first, _ = await collect_lines(ws, until_seq=30)

    await outage.begin()
    error = await receive(ws, timeout=30)
    closed = await ws.receive_output(timeout=10)
    await outage.end()

    assert error["type"] == "error" and error["last_seq"] == 30 and "after=30" in error["detail"]
    assert closed == {"type": "websocket.close", "code": 1011}
    await append_lines(session, 31, 20)  # written while the client was away
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/?after={error['last_seq']}", user)
    await receive(ws)
    rest, _ = await collect_lines(ws, until_seq=50)
    assert [line["seq"] for line in first + rest] == list(range(1, 51))
    await ws.disconnect()
