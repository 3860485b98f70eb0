"""Every websocket endpoint against anonymous, participant A, participant B, coordinator, staff and a
stranger (signed in, no standing): what is outside the caller's projects is not found (4404), what is
inside but not theirs is forbidden (4403)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call
from django.contrib.auth import get_user_model

from accounts.models import AuditEvent
from accounts.services import membership_set
from orchestration import consumers
from tests.factories import FederatedRunFactory, NodeFactory, NodeSessionFactory, ProjectFactory
from tests.ws import connect, receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

IDENTITIES = ["anonymous", "participant_a", "participant_b", "coordinator", "staff", "stranger"]


@sync_to_async
def world() -> dict[str, Any]:
    project = ProjectFactory()
    coordinator_node = NodeFactory(project=project, role="coordinator")
    site_a, site_b = NodeFactory(project=project), NodeFactory(project=project)
    users = {
        n: get_user_model().objects.create_user(username=n, password="pw-123456-xyz", is_staff=n == "staff")
        for n in IDENTITIES[1:]
    }
    membership_set(user=users["participant_a"], project=project, role="participant", node=site_a, actor="t", via="t")
    membership_set(user=users["participant_b"], project=project, role="participant", node=site_b, actor="t", via="t")
    membership_set(
        user=users["coordinator"], project=project, role="coordinator", node=coordinator_node, actor="t", via="t"
    )
    return {
        "users": users,
        "paths": {
            "session_a": f"/ws/sessions/{NodeSessionFactory(node=site_a, status='running').pk}/logs/",
            "session_b": f"/ws/sessions/{NodeSessionFactory(node=site_b, status='running').pk}/logs/",
            "run": f"/ws/runs/{FederatedRunFactory(project=project, status='running').pk}/logs/",
            "events": f"/ws/projects/{project.pk}/events/",
        },
    }


ALLOWED = {
    "session_a": {"participant_a", "coordinator", "staff"},
    "session_b": {"participant_b", "coordinator", "staff"},
    "run": {"participant_a", "participant_b", "coordinator", "staff"},
    "events": {"participant_a", "participant_b", "coordinator", "staff"},
}


@pytest.mark.parametrize("identity", IDENTITIES)
async def test_each_identity_follows_exactly_what_the_role_model_allows(identity: str) -> None:
    w = await world()
    user = None if identity == "anonymous" else w["users"][identity]
    for name, path in w["paths"].items():
        denied_before = await sync_to_async(AuditEvent.objects.filter(outcome="denied", via="websocket").count)()
        ws, _, _ = await connect(path, user)
        if identity in ALLOWED[name]:
            assert (await receive(ws))["type"] == "hello", (identity, name)
            await ws.disconnect()
        else:
            expected = {"anonymous": consumers.CLOSE_UNAUTHENTICATED, "stranger": consumers.CLOSE_NOT_FOUND}.get(
                identity, consumers.CLOSE_FORBIDDEN
            )
            assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": expected}, (identity, name)
            denied = await sync_to_async(AuditEvent.objects.filter(outcome="denied", via="websocket").count)()
            assert denied == denied_before + 1
