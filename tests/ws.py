"""Helpers for websocket consumer tests: a signed-in communicator that acknowledges like a client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from fedml_site.asgi import application
from orchestration import services
from orchestration.models import NodeSession


@sync_to_async
def make_user(*, staff: bool = False, username: str | None = None) -> Any:
    user_model = get_user_model()
    name = username or f"user{user_model.objects.count() + 1}"
    return user_model.objects.create_user(username=name, password="pw-123456-xyz", is_staff=staff)


@sync_to_async
def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def connect(path: str, user: Any | None = None) -> tuple[WebsocketCommunicator, bool, Any]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", f"sessionid={await session_cookie(user)}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def receive(communicator: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def collect_lines(
    communicator: WebsocketCommunicator,
    *,
    until_seq: int,
    follow: str | None = None,
    ack: bool = True,
    timeout: float = 20,
    received_before: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Receive until `follow` reached `until_seq`; returns (lines, every message).

    Acks carry the number of items received on the connection so far (`received_before` + ours).
    """
    lines: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    received = received_before
    last = 0
    while last < until_seq:
        message = await receive(communicator, timeout=timeout)
        messages.append(message)
        if message["type"] in ("lines", "events") and (follow is None or message["follow"] == follow):
            batch = message[message["type"]]
            lines.extend(batch)
            last = message["last_seq"]
        if message["type"] in ("lines", "events"):
            received += len(message[message["type"]])
            if ack:
                await communicator.send_json_to({"type": "ack", "received": received})
    return lines, messages


@sync_to_async
def append_lines(
    session: NodeSession | None, first: int, count: int, *, run: Any = None, text: str = "line {}"
) -> None:
    services.log_lines_append(
        session_id=session.pk if session is not None else None,
        run_id=run.pk if run is not None else None,
        first_seq=first,
        lines=[
            services.LogLineIn(stream="stdout", source="test", ts=datetime.now(UTC), text=text.format(first + i))
            for i in range(count)
        ],
        recent="",
    )
