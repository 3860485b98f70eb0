"""The follow protocol every FedML websocket speaks; subclasses choose what to follow.

Protocol (docs/feeds.md): the server sends {"type": "hello"}, then batches
{"type": "lines" | "events", ...} with gap-free sequence numbers; the client acknowledges with
{"type": "ack", "received": <items received so far>}. At most WINDOW items are in flight, so a
slow client costs the server nothing but its cursor; one that stalls is told {"type": "behind"}
and carries on from the database. Close codes: 4400 bad request, 4401 not signed in,
4403 forbidden, 4404 not found, 1011 the server could not go on (the database stayed unreachable
past PUMP_RETRY_FOR): the last message before it is {"type": "error", "follow", "last_seq"}, and a
client reconnecting with `after=<last_seq>` misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import InterfaceError, OperationalError

from accounts.middleware import SUBPROTOCOL
from accounts.services import audit_refusal_record
from core.errors import InvalidInput
from core.fields import parse_count
from core.parsers import json_loads
from orchestration import feeds

WINDOW = 20_000  # items sent but not yet acknowledged
BATCH = 2_000  # items per message at most
BEHIND_AFTER = 5.0  # seconds stalled on a full window before the client is told
RUN_WINDOW_SLACK = timedelta(seconds=5)  # session lines around a run's start and end
STATUS_CHECK_INTERVAL = 1.0
PUMP_RETRY_FIRST = 0.2  # after a read failed because the database is unreachable
PUMP_RETRY_MAX = 2.0
PUMP_RETRY_FOR = 30.0  # unreachable this long without progress: close 1011, the client resumes
CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4400, 4401, 4403, 4404
CLOSE_INTERNAL = 1011

logger = logging.getLogger(__name__)


class BadRequest(Exception):
    pass


@dataclass
class Follow:
    """One feed followed by one connection, with its own cursor."""

    name: str  # "run:<id>", "session:<id>", "events:<id>"
    cache: feeds.FeedCache
    cursor: int
    is_done: Any = None  # async () -> (done, status) once nothing more will come
    until: datetime | None = None  # lines after this time are outside the run's window
    transform: feeds.Transform | None = None
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        return parse_count(values[-1], field=name)
    except InvalidInput as exc:
        raise BadRequest(exc.message) from None


class FollowConsumer(AsyncWebsocketConsumer):
    message_type = "lines"
    # No channel of its own: doorbells are received once per feed per process (feeds.FeedCache).
    channel_layer_alias = None

    async def connect(self) -> None:
        self.follows: list[Follow] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.acked = 0
        self._acked_event = asyncio.Event()
        self._send_lock = asyncio.Lock()
        user = self.scope.get("user")
        # A client authenticating with a bearer subprotocol expects "fedml" back.
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None)
        if user is None or not user.is_authenticated:
            await self._audit_refusal(user, "not signed in")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            query = parse_qs(self.scope.get("query_string", b"").decode())
            code = await self.setup(user, query)
        except BadRequest as exc:
            await self.send(text_data=json.dumps({"type": "error", "detail": str(exc)}))
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        if code is not None:
            # Not found is refused too: another project's ids are not found (probing them is audited).
            if code in (CLOSE_FORBIDDEN, CLOSE_NOT_FOUND):
                await self._audit_refusal(user, "forbidden" if code == CLOSE_FORBIDDEN else "not found")
            await self.close(code=code)
            return
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "window": WINDOW,
                    "follows": [{"name": f.name, "cursor": f.cursor, "head": f.cache.head} for f in self.follows],
                }
            )
        )
        for follow in self.follows:
            self.tasks.append(asyncio.create_task(self.pump_guarded(follow)))

    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        raise NotImplementedError

    async def _audit_refusal(self, user: Any, reason: str) -> None:
        client = self.scope.get("client") or ("", 0)
        await database_sync_to_async(audit_refusal_record)(
            actor=user,
            action="websocket.connect",
            target=self.scope.get("path", ""),
            remote_addr=str(client[0] or ""),
            via="websocket",
            detail={"reason": reason},
        )

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        for task in getattr(self, "tasks", []):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for follow in getattr(self, "follows", []):
            feeds.release(follow.cache)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json_loads(text_data or "")  # nested too deep is ignored too
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "ack" and isinstance(message.get("received"), int):
            self.acked = max(self.acked, min(message["received"], self.sent))
            self._acked_event.set()

    async def pump_guarded(self, follow: Follow) -> None:
        """`pump`, never dying silently: a database that does not answer is retried (the cursor
        keeps what was sent); past PUMP_RETRY_FOR, or on any other error, the client is told where
        it stopped and the socket closes 1011, so it reconnects with `after=`."""
        wait = PUMP_RETRY_FIRST
        failing_since: float | None = None
        while True:
            cursor = follow.cursor
            try:
                await self.pump(follow)
                return
            except asyncio.CancelledError:
                raise
            except (OperationalError, InterfaceError):
                now = time.monotonic()
                if failing_since is None or follow.cursor != cursor:
                    failing_since, wait = now, PUMP_RETRY_FIRST  # progress since the last failure
                if now - failing_since < PUMP_RETRY_FOR:
                    logger.warning("follow %s: the database did not answer; retrying", follow.name)
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, PUMP_RETRY_MAX)
                    continue
                detail = "the database is unavailable"
            except Exception:
                logger.exception("follow %s failed", follow.name)
                detail = "the server failed"
            await self._close_resumable(follow, detail)
            return

    async def _close_resumable(self, follow: Follow, detail: str) -> None:
        with contextlib.suppress(Exception):  # the socket may be gone already
            await self._send(
                json.dumps(
                    {
                        "type": "error",
                        "follow": follow.name,
                        "last_seq": follow.cursor,
                        "detail": f"{detail}: reconnect with after={follow.cursor}",
                    }
                )
            )
            await self.close(code=CLOSE_INTERNAL)

    async def pump(self, follow: Follow) -> None:
        interval = feeds.poll_interval()
        last_status_check = 0.0
        while True:
            items = await follow.cache.read(follow.cursor, BATCH)
            if items:
                cursor = items[-1].seq
                if follow.until is not None:
                    inside = [i for i in items if i.ts <= follow.until.isoformat()]
                    if len(inside) < len(items):
                        items = inside
                        follow.finished = True
                if follow.transform is not None:
                    items = [t for t in (follow.transform(i) for i in items) if t is not None]
                if items:
                    await self.send_batch(follow, items, cursor)
                follow.cursor = cursor
                if follow.finished:
                    await self.send_eof(follow, status=None)
                    return
                continue
            now = time.monotonic()
            if follow.is_done is not None and now - last_status_check >= STATUS_CHECK_INTERVAL:
                last_status_check = now
                done, status = await follow.is_done()
                if done:
                    # Lines written before the status changed may be newer than our view.
                    await follow.cache.refresh(force=True)
                    if await follow.cache.read(follow.cursor, 1):
                        continue
                    await self.send_eof(follow, status=status)
                    return
            await follow.cache.wait_beyond(follow.cursor, interval)

    async def send_batch(self, follow: Follow, items: list[feeds.Item], cursor: int) -> None:
        told = False
        while self.sent - self.acked >= WINDOW:
            self._acked_event.clear()
            try:
                await asyncio.wait_for(self._acked_event.wait(), BEHIND_AFTER)
            except TimeoutError:
                if not told:
                    told = True
                    await self._send(
                        json.dumps(
                            {
                                "type": "behind",
                                "follow": follow.name,
                                "cursor": follow.cursor,
                                "head": follow.cache.head,
                            }
                        )
                    )
        body = ",".join(item.frag for item in items)
        text = f'{{"type":"{self.message_type}","follow":"{follow.name}","last_seq":{cursor},"{self.message_type}":[{body}]}}'
        self.sent += len(items)
        await self._send(text)

    async def send_eof(self, follow: Follow, *, status: str | None) -> None:
        follow.finished = True
        await self._send(
            json.dumps({"type": "eof", "follow": follow.name, "last_seq": follow.cursor, "status": status})
        )
        if all(f.finished for f in self.follows):
            await self.close(code=1000)

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self.send(text_data=text)


def uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
