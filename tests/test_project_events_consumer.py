"""The project-wide event stream: status changes and finished rounds, resumable by seq."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call

from accounts.models import Membership
from orchestration import services
from orchestration.models import FederatedRun, NodeSession, ProjectEvent
from tests.factories import FederatedRunFactory, NodeFactory, NodeSessionFactory
from tests.ws import collect_lines, connect, make_user, receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@sync_to_async
def setup_project() -> tuple[FederatedRun, NodeSession, NodeSession]:
    run = FederatedRunFactory(status="requested")
    mine = NodeSessionFactory(node=NodeFactory(project=run.project), status="requested")
    theirs = NodeSessionFactory(node=NodeFactory(project=run.project), status="requested")
    return run, mine, theirs


@sync_to_async
def transitions(run: FederatedRun, mine: NodeSession, theirs: NodeSession) -> None:
    services.session_claim(session_id=mine.pk, supervisor_id=None)
    services.session_claim(session_id=theirs.pk, supervisor_id=None)
    services.run_claim(run_id=run.pk, supervisor_id=None)
    services.round_metric_record(
        run_id=run.pk,
        round=1,
        phase="evaluate",
        aggregated={"accuracy": 0.9},
        per_node={"1": {"accuracy": 0.8}, "2": {"accuracy": 1.0}},
        num_rounds=3,
    )


async def test_events_are_gap_free_and_resume_from_a_seq() -> None:
    run, mine, theirs = await setup_project()
    user = await make_user(staff=True)
    ws, _, _ = await connect(f"/ws/projects/{run.project_id}/events/?after=0", user)
    assert (await receive(ws))["type"] == "hello"
    await transitions(run, mine, theirs)
    total = await sync_to_async(ProjectEvent.objects.filter(project_id=run.project_id).count)()
    events, _ = await collect_lines(ws, until_seq=total)
    assert [e["seq"] for e in events] == list(range(1, total + 1))
    types = [e["type"] for e in events]
    assert types.count("session.status") == 2 and "run.status" in types and types[-1] == "run.round"
    assert events[-1]["payload"]["per_node"] == {"1": {"accuracy": 0.8}, "2": {"accuracy": 1.0}}
    await ws.disconnect()
    ws, _, _ = await connect(f"/ws/projects/{run.project_id}/events/?after={total - 1}", user)
    await receive(ws)
    again, _ = await collect_lines(ws, until_seq=total)
    assert [e["seq"] for e in again] == [total]
    await ws.disconnect()


@sync_to_async
def participant_for(session: NodeSession) -> object:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="site", password="pw-123456-xyz")
    Membership.objects.create(user=user, project=session.node.project, role="participant", node=session.node)
    return user


async def test_participant_sees_own_sessions_and_only_aggregated_round_metrics() -> None:
    run, mine, theirs = await setup_project()
    user = await participant_for(mine)
    ws, _, _ = await connect(f"/ws/projects/{run.project_id}/events/?after=0", user)
    await receive(ws)
    await transitions(run, mine, theirs)
    total = await sync_to_async(ProjectEvent.objects.filter(project_id=run.project_id).count)()
    events, _ = await collect_lines(ws, until_seq=total)
    session_ids = {e["payload"]["session_id"] for e in events if e["type"] == "session.status"}
    assert session_ids == {str(mine.pk)}
    rounds = [e for e in events if e["type"] == "run.round"]
    assert rounds[0]["payload"]["aggregated"] == {"accuracy": 0.9} and rounds[0]["payload"]["per_node"] == {}
    await ws.disconnect()
