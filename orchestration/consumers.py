"""Websocket consumers: follow a session's log, a run's log, or a project's events.

Protocol (docs/streaming.md): the server sends {"type": "hello"}, then batches
{"type": "lines" | "events", ...} with gap-free sequence numbers; the client acknowledges with
{"type": "ack", "received": <items received so far>}. At most WINDOW items are in flight, so a
slow client costs the server nothing but its cursor; one that stalls is told {"type": "behind"}
and carries on from the database. Close codes: 4400 bad request, 4401 not signed in,
4403 forbidden, 4404 not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts import permissions
from accounts.middleware import SUBPROTOCOL
from accounts.services import audit_record
from orchestration import streaming
from orchestration.errors import InvalidInput
from orchestration.models import FederatedRun, NodeSession, Project, SessionKind
from orchestration.serializers import parse_count

WINDOW = 20_000  # items sent but not yet acknowledged
BATCH = 2_000  # items per message at most
BEHIND_AFTER = 5.0  # seconds stalled on a full window before the client is told
RUN_WINDOW_SLACK = timedelta(seconds=5)  # session lines around a run's start and end
STATUS_CHECK_INTERVAL = 1.0
CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4400, 4401, 4403, 4404


class BadRequest(Exception):
    pass


@dataclass
class Follow:
    """One feed followed by one connection, with its own cursor."""

    name: str  # "run:<id>", "session:<id>", "events:<id>"
    tail: streaming.Tail
    cursor: int
    is_done: Any = None  # async () -> (done, status) once nothing more will come
    until: datetime | None = None  # lines after this time are outside the run's window
    transform: streaming.Transform | None = None
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        return parse_count(values[-1], field=name)
    except InvalidInput as exc:
        raise BadRequest(exc.message) from None


class FollowConsumer(AsyncWebsocketConsumer):
    message_type = "lines"
    # No channel of its own: doorbells are received once per feed per process (streaming.Tail).
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
            if code == CLOSE_FORBIDDEN:
                await self._audit_refusal(user, "forbidden")
            await self.close(code=code)
            return
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "window": WINDOW,
                    "follows": [{"name": f.name, "cursor": f.cursor, "head": f.tail.head} for f in self.follows],
                }
            )
        )
        for follow in self.follows:
            self.tasks.append(asyncio.create_task(self.pump(follow)))

    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        raise NotImplementedError

    async def _audit_refusal(self, user: Any, reason: str) -> None:
        client = self.scope.get("client") or ("", 0)
        await database_sync_to_async(audit_record)(
            actor=user,
            action="websocket.connect",
            outcome="denied",
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
            streaming.release(follow.tail)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "ack" and isinstance(message.get("received"), int):
            self.acked = max(self.acked, min(message["received"], self.sent))
            self._acked_event.set()

    async def pump(self, follow: Follow) -> None:
        interval = streaming.poll_interval()
        last_status_check = 0.0
        while True:
            items = await follow.tail.read(follow.cursor, BATCH)
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
                    await follow.tail.refresh(force=True)
                    if await follow.tail.read(follow.cursor, 1):
                        continue
                    await self.send_eof(follow, status=status)
                    return
            await follow.tail.wait_beyond(follow.cursor, interval)

    async def send_batch(self, follow: Follow, items: list[streaming.Item], cursor: int) -> None:
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
                            {"type": "behind", "follow": follow.name, "cursor": follow.cursor, "head": follow.tail.head}
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


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


@database_sync_to_async
def _load_session(session_id: Any) -> NodeSession | None:
    return NodeSession.objects.select_related("node", "node__project").filter(pk=session_id).first()


def _session_status_sync(session_id: Any) -> tuple[bool, str]:
    status = NodeSession.objects.filter(pk=session_id).values_list("status", flat=True).first()
    return status is None or status not in ("requested", "starting", "running", "stopping"), str(status)


async def _session_status(session_id: Any) -> tuple[bool, str]:
    return await streaming.shared_status(("session", session_id), lambda: _session_status_sync(session_id))


class SessionLogConsumer(FollowConsumer):
    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        session_id = _uuid(self.scope["url_route"]["kwargs"]["session_id"])
        session = await _load_session(session_id) if session_id else None
        if session is None:
            return CLOSE_NOT_FOUND
        if not await database_sync_to_async(permissions.can_view_session)(user, session):
            return CLOSE_FORBIDDEN
        after = _int_param(query, "after") or 0
        tail = await streaming.acquire(streaming.LogFeed("session", session.pk))
        self.follows.append(
            Follow(
                name=f"session:{session.pk}",
                tail=tail,
                cursor=after,
                is_done=lambda: _session_status(session.pk),
            )
        )
        return None


@database_sync_to_async
def _run_context(run_id: Any, user: Any) -> tuple[FederatedRun | None, bool, list[NodeSession]]:
    run = FederatedRun.objects.select_related("project", "coordinator_session").filter(pk=run_id).first()
    if run is None:
        return None, False, []
    if not permissions.can_view_run(user, run):
        return run, False, []
    return run, True, _run_sessions(run, user)


def _run_sessions(run: FederatedRun, user: Any) -> list[NodeSession]:
    """The SuperLink and SuperNodes alive during the run that this user may see."""
    start = (run.started_at or run.created_at) - RUN_WINDOW_SLACK
    sessions = NodeSession.objects.select_related("node").filter(node__project=run.project, started_at__isnull=False)
    sessions = sessions.exclude(ended_at__lt=start)
    if run.ended_at is not None:
        sessions = sessions.filter(started_at__lte=run.ended_at + RUN_WINDOW_SLACK)
    visible = [s for s in sessions if s.kind in (SessionKind.SUPERLINK, SessionKind.SUPERNODE)]
    return [s for s in visible if permissions.can_view_session(user, s)]


def _run_status_sync(run_id: Any) -> tuple[bool, str, datetime | None]:
    row = FederatedRun.objects.filter(pk=run_id).values_list("status", "ended_at").first()
    if row is None:
        return True, "deleted", None
    status, ended_at = row
    return status in ("completed", "failed", "stopped"), status, ended_at


async def _run_status(run_id: Any) -> tuple[bool, str, datetime | None]:
    return await streaming.shared_status(("run", run_id), lambda: _run_status_sync(run_id))


class RunLogConsumer(FollowConsumer):
    """A run's `flwr run` log plus, tagged, the SuperLink's and SuperNodes' lines of its period."""

    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        run_id = _uuid(self.scope["url_route"]["kwargs"]["run_id"])
        run, allowed, sessions = await _run_context(run_id, user) if run_id else (None, False, [])
        if run is None:
            return CLOSE_NOT_FOUND
        if not allowed:
            return CLOSE_FORBIDDEN
        self.run = run
        self.user = user
        run_tail = await streaming.acquire(streaming.LogFeed("run", run.pk))
        self.follows.append(
            Follow(name=f"run:{run.pk}", tail=run_tail, cursor=_int_param(query, "after") or 0, is_done=self._run_done)
        )
        for session in sessions:
            await self._add_session(session, query)
        return None

    async def _add_session(self, session: NodeSession, query: dict[str, list[str]]) -> Follow:
        feed = streaming.LogFeed("session", session.pk)
        cursor = _int_param(query, f"after.{session.pk}")
        if cursor is None:
            start = (self.run.started_at or self.run.created_at) - RUN_WINDOW_SLACK
            cursor = await database_sync_to_async(feed.seq_before)(start)
        tail = await streaming.acquire(feed)
        follow = Follow(
            name=f"session:{session.pk}",
            tail=tail,
            cursor=cursor,
            is_done=lambda: self._session_done(session.pk),
            extra={"kind": session.kind},
        )
        self.follows.append(follow)
        return follow

    async def _run_done(self) -> tuple[bool, str]:
        done, status, ended_at = await _run_status(self.run.pk)
        if done and ended_at is not None:
            # The sessions' windows close a little after the run's end.
            for follow in self.follows[1:]:
                follow.until = ended_at + RUN_WINDOW_SLACK
        elif not done:
            await self._discover_sessions()
        return done, status

    async def _session_done(self, session_id: Any) -> tuple[bool, str]:
        done, status = await _session_status(session_id)
        run_done, _, ended_at = await _run_status(self.run.pk)
        if run_done and ended_at is not None and datetime.now(ended_at.tzinfo) > ended_at + RUN_WINDOW_SLACK:
            return True, status
        return done, status

    async def _discover_sessions(self) -> None:
        """SuperNodes that join mid-run are followed from when they start."""
        known = {f.name for f in self.follows}
        run = await database_sync_to_async(FederatedRun.objects.get)(pk=self.run.pk)
        self.run = run
        for session in await database_sync_to_async(_run_sessions)(run, self.user):
            if f"session:{session.pk}" not in known:
                follow = await self._add_session(session, {})
                self.tasks.append(asyncio.create_task(self.pump(follow)))


@database_sync_to_async
def _load_project(project_id: Any, user: Any) -> tuple[Project | None, bool, bool, Any]:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None, False, False, None
    return (
        project,
        permissions.can_view_project(user, project),
        permissions.can_view_per_node_metrics(user, project),
        permissions.visible_node_id(user, project),
    )


class ProjectEventsConsumer(FollowConsumer):
    """Session and run status changes and finished rounds of one project."""

    message_type = "events"

    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        project_id = _uuid(self.scope["url_route"]["kwargs"]["project_id"])
        project, allowed, per_node, node_id = await _load_project(project_id, user) if project_id else (None,) * 4
        if project is None:
            return CLOSE_NOT_FOUND
        if not allowed:
            return CLOSE_FORBIDDEN
        tail = await streaming.acquire(streaming.EventFeed(project.pk))
        after = _int_param(query, "after")
        node_ids: set[str] | None = None
        if node_id is not None:
            node_ids = {str(node_id)}
        self.follows.append(
            Follow(
                name=f"events:{project.pk}",
                tail=tail,
                cursor=tail.head if after is None else after,
                transform=_event_filter(per_node=per_node, node_ids=node_ids),
            )
        )
        return None


def _event_filter(*, per_node: bool, node_ids: set[str] | None) -> streaming.Transform | None:
    """A participant sees its own node's sessions and only aggregated round metrics."""
    if per_node and node_ids is None:
        return None

    def transform(item: streaming.Item) -> streaming.Item | None:
        obj = item.obj or {}
        payload = obj.get("payload", {})
        if (
            node_ids is not None
            and obj.get("type", "").startswith("session.")
            and payload.get("node_id") not in node_ids
        ):
            return None
        if not per_node and obj.get("type") == "run.round" and payload.get("per_node"):
            obj = {**obj, "payload": {**payload, "per_node": {}}}
            return streaming.Item(item.seq, item.ts, streaming.encode(obj), obj)
        return item

    return transform
