"""Following a run's log: its `flwr run` lines plus, tagged, its SuperLink's and SuperNodes' lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call

from accounts.models import Membership
from orchestration import consumers
from orchestration.models import FederatedRun, LogLine, NodeSession
from tests.factories import FederatedRunFactory, NodeFactory, NodeSessionFactory, ProjectFactory
from tests.ws import append_lines, collect_lines, connect, make_user, receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@sync_to_async
def federation() -> tuple[FederatedRun, NodeSession, NodeSession, NodeSession]:
    project = ProjectFactory()
    started = datetime.now(UTC) - timedelta(minutes=1)
    coordinator = NodeFactory(project=project, role="coordinator")
    site_a = NodeFactory(project=project)
    site_b = NodeFactory(project=project)
    superlink = NodeSessionFactory(node=coordinator, kind="superlink", status="running", started_at=started)
    node_a = NodeSessionFactory(node=site_a, status="running", started_at=started)
    node_b = NodeSessionFactory(node=site_b, status="running", started_at=started)
    run = FederatedRunFactory(
        project=project, status="running", coordinator_session=superlink, started_at=datetime.now(UTC)
    )
    return run, superlink, node_a, node_b


@sync_to_async
def old_line(session: NodeSession) -> None:
    LogLine.objects.create(
        session=session,
        seq=1,
        stream="stdout",
        source="old",
        ts=datetime.now(UTC) - timedelta(minutes=5),
        text="before the run",
    )


@sync_to_async
def finish(run: FederatedRun) -> None:
    FederatedRun.objects.filter(pk=run.pk).update(
        status="completed", ended_at=datetime.now(UTC) - timedelta(seconds=10)
    )


async def test_run_stream_merges_tagged_process_logs_of_the_runs_period_and_ends_with_eof() -> None:
    run, superlink, node_a, node_b = await federation()
    await old_line(node_a)  # written long before the run: not part of it
    await append_lines(None, 1, 30, run=run, text="run {}")
    await append_lines(superlink, 1, 10, text="superlink {}")
    await append_lines(node_a, 2, 10, text="node-a {}")
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/runs/{run.pk}/logs/", user)
    hello = await receive(ws)
    names = {f["name"] for f in hello["follows"]}
    assert names == {f"run:{run.pk}", f"session:{superlink.pk}", f"session:{node_a.pk}", f"session:{node_b.pk}"}
    by_follow: dict[str, list[str]] = {}
    received = 0
    while sum(len(v) for v in by_follow.values()) < 50:
        message = await receive(ws)
        if message["type"] == "lines":
            by_follow.setdefault(message["follow"], []).extend(line["text"] for line in message["lines"])
            received += len(message["lines"])
            await ws.send_json_to({"type": "ack", "received": received})
    assert by_follow[f"run:{run.pk}"] == [f"run {i}" for i in range(1, 31)]
    assert by_follow[f"session:{superlink.pk}"] == [f"superlink {i}" for i in range(1, 11)]
    assert by_follow[f"session:{node_a.pk}"] == [f"node-a {i}" for i in range(2, 12)]
    await finish(run)
    eofs = set()
    while len(eofs) < 4:
        message = await receive(ws, timeout=15)
        assert message["type"] == "eof", message
        eofs.add(message["follow"])
    assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"


async def test_run_stream_resumes_each_source_from_its_own_cursor() -> None:
    run, superlink, node_a, _ = await federation()
    await append_lines(None, 1, 20, run=run)
    await append_lines(node_a, 1, 20)
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/runs/{run.pk}/logs/?after=15&after.{node_a.pk}=18", user)
    hello = await receive(ws)
    cursors = {f["name"]: f["cursor"] for f in hello["follows"]}
    assert cursors[f"run:{run.pk}"] == 15 and cursors[f"session:{node_a.pk}"] == 18
    run_lines, _ = await collect_lines(ws, until_seq=20, follow=f"run:{run.pk}")
    assert [line["seq"] for line in run_lines] == [16, 17, 18, 19, 20]
    await ws.disconnect()


@sync_to_async
def participant(node: object, project: object) -> object:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="site-a", password="pw-123456-xyz")
    Membership.objects.create(user=user, project=project, role="participant", node=node)
    return user


async def test_participant_sees_the_run_and_only_its_own_nodes_lines() -> None:
    run, superlink, node_a, node_b = await federation()
    user = await participant(await sync_to_async(lambda: node_a.node)(), await sync_to_async(lambda: run.project)())
    ws, _, _ = await connect(f"/ws/runs/{run.pk}/logs/", user)
    hello = await receive(ws)
    assert {f["name"] for f in hello["follows"]} == {f"run:{run.pk}", f"session:{node_a.pk}"}
    await ws.disconnect()
    stranger = await make_user()  # no standing in the run's project: the run is not found
    ws, _, _ = await connect(f"/ws/runs/{run.pk}/logs/", stranger)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": consumers.CLOSE_NOT_FOUND}
