"""Following one node session's log over a websocket."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call

from accounts.models import Membership
from orchestration import consumers
from orchestration.consumers import follow as follow_protocol
from orchestration.models import NodeSession
from tests.factories import NodeFactory, NodeSessionFactory
from tests.ws import append_lines, collect_lines, connect, make_user, receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@sync_to_async
def running_session() -> NodeSession:
    return NodeSessionFactory(status="running")


async def test_backlog_then_live_lines_arrive_in_order_exactly_once() -> None:
    session = await running_session()
    await append_lines(session, 1, 300)
    user = await make_user(staff=True)
    ws, connected, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    assert connected
    hello = await receive(ws)
    assert hello["type"] == "hello" and hello["follows"][0]["cursor"] == 0
    backlog, _ = await collect_lines(ws, until_seq=300)
    await append_lines(session, 301, 200)
    live, _ = await collect_lines(ws, until_seq=500)
    texts = [line["text"] for line in backlog + live]
    assert texts == [f"line {i}" for i in range(1, 501)]
    assert [line["seq"] for line in backlog + live] == list(range(1, 501))
    await ws.disconnect()


async def test_resume_after_disconnect_has_no_gap_and_no_duplicate() -> None:
    session = await running_session()
    await append_lines(session, 1, 120)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    first, _ = await collect_lines(ws, until_seq=120)
    await ws.disconnect()
    await append_lines(session, 121, 80)  # written while the client was away
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/?after={first[-1]['seq']}", user)
    assert (await receive(ws))["follows"][0]["cursor"] == 120
    await append_lines(session, 201, 50)
    second, _ = await collect_lines(ws, until_seq=250)
    assert [line["seq"] for line in first + second] == list(range(1, 251))
    await ws.disconnect()


async def test_a_message_nested_too_deep_is_ignored_and_the_follow_goes_on() -> None:
    session = await running_session()
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)

    await ws.send_to(text_data="[" * 5000 + "]" * 5000)  # Python's parser alone would raise RecursionError
    await ws.send_to(text_data='{"type": "ack", "received": ' + "[" * 40 + "]" * 40 + "}")
    await append_lines(session, 1, 5)
    lines, _ = await collect_lines(ws, until_seq=5)

    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    await ws.disconnect()


async def test_lines_arrive_batched_many_per_message() -> None:
    session = await running_session()
    await append_lines(session, 1, 5000)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    lines, messages = await collect_lines(ws, until_seq=5000)
    assert len(lines) == 5000
    assert len([m for m in messages if m["type"] == "lines"]) <= 5000 // consumers.BATCH + 1
    await ws.disconnect()


async def test_unauthenticated_connection_is_refused_with_4401() -> None:
    session = await running_session()
    ws, connected, _ = await connect(f"/ws/sessions/{session.pk}/logs/")
    output = await ws.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
    assert connected  # accepted only to say why it closes


@sync_to_async
def participant_of(node_id: object) -> object:
    from django.contrib.auth import get_user_model

    node = NodeFactory._meta.model.objects.get(pk=node_id)
    user = get_user_model().objects.create_user(username=f"p-{node.external_id}", password="pw-123456-xyz")
    Membership.objects.create(user=user, project=node.project, role="participant", node=node)
    return user


@sync_to_async
def other_node_session(session: NodeSession) -> NodeSession:
    other = NodeFactory(project=session.node.project)
    return NodeSessionFactory(node=other, status="running")


async def test_participant_may_follow_its_own_node_but_is_refused_another_nodes_session() -> None:
    session = await running_session()
    other = await other_node_session(session)
    await append_lines(session, 1, 3)
    user = await participant_of(session.node_id)
    ws, _, _ = await connect(f"/ws/sessions/{other.pk}/logs/", user)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": consumers.CLOSE_FORBIDDEN}
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    lines, _ = await collect_lines(ws, until_seq=3)
    assert [line["seq"] for line in lines] == [1, 2, 3]
    await ws.disconnect()


async def test_unknown_session_and_bad_cursor_close_with_their_codes() -> None:
    user = await make_user(staff=True)
    ws, _, _ = await connect("/ws/sessions/00000000-0000-0000-0000-000000000000/logs/", user)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": consumers.CLOSE_NOT_FOUND}
    session = await running_session()
    # Python's int() would take the fullwidth digits and "1_000"; no bigint holds the last one.
    for cursor in ("abc", "-1", "%EF%BC%91%EF%BC%92", "1_000", "9999999999999999999"):
        ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/?after={cursor}", user)
        error = await receive(ws)
        assert error["type"] == "error" and error["detail"].startswith("after must be a whole number"), cursor
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": consumers.CLOSE_BAD_REQUEST}


@sync_to_async
def end_session(session: NodeSession) -> None:
    NodeSession.objects.filter(pk=session.pk).update(status="exited")


async def test_ended_session_sends_eof_after_its_last_line_and_closes() -> None:
    session = await running_session()
    await append_lines(session, 1, 10)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    await collect_lines(ws, until_seq=10)
    await append_lines(session, 11, 5)
    await end_session(session)
    lines, messages = await collect_lines(ws, until_seq=15)
    eof = await receive(ws)
    assert eof == {"type": "eof", "follow": f"session:{session.pk}", "last_seq": 15, "status": "exited"}
    assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"


async def test_client_that_stops_acknowledging_is_told_it_is_behind_and_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow_protocol, "WINDOW", 100)
    monkeypatch.setattr(follow_protocol, "BATCH", 50)
    monkeypatch.setattr(follow_protocol, "BEHIND_AFTER", 0.3)
    session = await running_session()
    await append_lines(session, 1, 400)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/sessions/{session.pk}/logs/", user)
    await receive(ws)
    received: list[dict] = []
    for _ in range(2):
        message = await receive(ws)
        received.extend(message["lines"])
    behind = await receive(ws)
    assert behind["type"] == "behind" and behind["cursor"] == 100 and behind["head"] == 400
    assert await ws.receive_nothing(timeout=0.5)
    await ws.send_json_to({"type": "ack", "received": len(received)})
    rest, _ = await collect_lines(ws, until_seq=400, received_before=len(received))
    assert [line["seq"] for line in received + rest] == list(range(1, 401))
    await ws.disconnect()
    await asyncio.sleep(0)
