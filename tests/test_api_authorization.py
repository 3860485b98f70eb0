"""Who may do what: every HTTP endpoint against anonymous, participant A (this site's node),
participant B (another site of the project), coordinator and staff. Refusals change nothing
and are audited. A participant endpoint that names no node acts on the caller's own site."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts import services as accounts_services
from accounts.models import AuditEvent
from accounts.services import membership_set
from orchestration import services
from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from tests.factories import FederatedRunFactory, NodeFactory, NodeSessionFactory

pytestmark = pytest.mark.django_db

IDENTITIES = ["anonymous", "participant_a", "participant_b", "coordinator", "staff"]
READ, SITE_READ, SITE_CONTROL, CONTROL = "read", "site_read", "site_control", "control"
OWN_SITE_CONTROL, NAMED_SITE_A = "own_site_control", "named_site_a"

# Who is allowed, by kind of endpoint.
ALLOWED = {
    READ: {"participant_a", "participant_b", "coordinator", "staff"},
    SITE_READ: {"participant_a", "coordinator", "staff"},
    SITE_CONTROL: {"participant_a", "staff"},
    CONTROL: {"coordinator", "staff"},
    OWN_SITE_CONTROL: {"participant_a", "participant_b", "staff"},  # each on its own site
    NAMED_SITE_A: {"participant_a", "staff"},
}
# Refusals by kind: naming another site's node is "not found" to a participant of another site.
REFUSAL = {NAMED_SITE_A: {"participant_b": 404}}


@pytest.fixture
def world(settings: Any, tmp_path: Any) -> dict[str, Any]:
    settings.START_WAIT_SECONDS = 0.5
    coordinator_node = accounts_services.coordinator_node_ensure()
    site_a = accounts_services.participant_node_ensure()
    project = site_a.project
    site_b = NodeFactory(project=project, role="participant")
    run = FederatedRunFactory(project=project, status="completed")
    session_a = NodeSessionFactory(node=site_a, status="running")
    session_b = NodeSessionFactory(node=site_b, status="running")
    users = {}
    for name in IDENTITIES[1:]:
        users[name] = get_user_model().objects.create_user(
            username=name, password="pw-123456-xyz", is_staff=name == "staff"
        )
    membership_set(user=users["participant_a"], project=project, role="participant", node=site_a, actor="t", via="t")
    membership_set(user=users["participant_b"], project=project, role="participant", node=site_b, actor="t", via="t")
    membership_set(
        user=users["coordinator"], project=project, role="coordinator", node=coordinator_node, actor="t", via="t"
    )
    return {"users": users, "run": run, "session_a": session_a, "session_b": session_b, "site_a": site_a}


def endpoints(w: dict[str, Any]) -> list[tuple[str, str, dict | None, str]]:
    run, a, b, site = w["run"].pk, w["session_a"].pk, w["session_b"].pk, w["site_a"].pk
    return [
        ("get", "/api/coordinator/health", None, READ),
        ("get", "/api/coordinator/runs/active", None, READ),
        ("get", f"/api/coordinator/runs/{run}", None, READ),
        ("get", f"/api/coordinator/runs/{run}/logs", None, READ),
        ("get", f"/api/coordinator/sessions/{a}/logs", None, SITE_READ),
        ("post", "/api/coordinator/superlink/start", {}, CONTROL),
        ("post", "/api/coordinator/superlink/stop", {}, CONTROL),
        ("post", "/api/coordinator/runs/start", {}, CONTROL),
        ("post", "/api/coordinator/runs/stop", {}, CONTROL),
        ("post", f"/api/coordinator/nodes/{site}/enroll", {"public_key": "x"}, CONTROL),
        ("post", f"/api/coordinator/nodes/{site}/revoke", {}, CONTROL),
        ("get", "/api/participant/health", None, READ),  # each caller's own site (or nothing)
        ("get", "/api/participant/supernodes", None, READ),
        ("get", f"/api/participant/supernodes/{a}", None, SITE_READ),
        ("post", "/api/participant/supernode/start", {}, OWN_SITE_CONTROL),
        ("post", "/api/participant/supernode/stop", {}, OWN_SITE_CONTROL),
        ("post", f"/api/participant/supernodes/{a}/stop", {}, SITE_CONTROL),
        ("post", "/api/participant/supernode/keys", {}, OWN_SITE_CONTROL),
        ("post", "/api/participant/supernode/keys", {"node_id": str(site)}, NAMED_SITE_A),
        ("get", f"/api/coordinator/sessions/{b}/logs", None, "session_b"),
    ]


def _client(w: dict[str, Any], identity: str) -> APIClient:
    client = APIClient()
    if identity != "anonymous":
        client.force_authenticate(w["users"][identity])
    return client


def _state() -> tuple[list, list, list]:
    return (
        sorted(NodeSession.objects.values_list("id", "status", "stop_requested_at")),
        sorted(FederatedRun.objects.values_list("id", "status", "stop_requested_at")),
        list(NodeEnrollment.objects.values_list("id", "status")),
    )


@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_endpoint_gives_each_identity_exactly_what_the_role_model_says(
    world: dict[str, Any], identity: str
) -> None:
    allowed_b = {"participant_b", "coordinator", "staff"}
    for method, path, body, kind in endpoints(world):
        allowed = identity in (allowed_b if kind == "session_b" else ALLOWED[kind])
        before = _state()
        denied_before = AuditEvent.objects.filter(outcome="denied").count()
        client = _client(world, identity)
        response = getattr(client, method)(path, body, format="json") if body is not None else client.get(path)
        if allowed:
            assert response.status_code not in (401, 403), (identity, path, response.status_code)
        else:
            expected = 401 if identity == "anonymous" else REFUSAL.get(kind, {}).get(identity, 403)
            assert response.status_code == expected, (identity, path, response.status_code)
            assert _state() == before, (identity, path)
            if expected != 404:
                assert AuditEvent.objects.filter(outcome="denied").count() == denied_before + 1, (identity, path)


def test_participants_see_aggregated_round_metrics_only(world: dict[str, Any]) -> None:
    services.round_metric_record(
        run_id=world["run"].pk,
        round=1,
        phase="evaluate",
        aggregated={"accuracy": 0.9},
        per_node={"7": {"accuracy": 1}},
        num_rounds=1,
    )
    path = f"/api/coordinator/runs/{world['run'].pk}"
    assert _client(world, "participant_a").get(path).json()["rounds"][0]["per_node"] == {}
    assert _client(world, "coordinator").get(path).json()["rounds"][0]["per_node"] == {"7": {"accuracy": 1}}


def test_control_actions_are_audited_with_actor_outcome_and_address(world: dict[str, Any]) -> None:
    response = _client(world, "coordinator").post("/api/coordinator/superlink/start", {}, format="json")
    assert response.status_code == 503  # no supervisor: allowed, but nothing could start
    event = AuditEvent.objects.filter(action="superlink.start").get()
    assert (event.actor_label, event.outcome, event.via) == ("coordinator", "error", "api")
    assert event.remote_addr == "127.0.0.1" and event.detail["status"] == "503"
