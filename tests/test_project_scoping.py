"""Many projects in one deployment: which project and node a control request acts on
(orchestration.scoping), and what each project gets of its own (SuperLink port, state, logs)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts import services as accounts_services
from accounts.services.projects import project_create, project_join
from core.errors import Conflict, InvalidInput
from orchestration import services
from orchestration.models import NodeSession
from orchestration.runtime_config import superlink_config
from participants import services as participant_services
from tests.factories import NodeSessionFactory, UserFactory, person_of

pytestmark = pytest.mark.django_db

HEALTH = "/api/coordinator/health"


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def two_projects(alive: None) -> dict[str, Any]:
    """Projects A and B, each with its coordinator (owner) and one joined participant."""
    world: dict[str, Any] = {}
    for name in ("a", "b"):
        owner, member = UserFactory(username=f"owner-{name}"), UserFactory(username=f"member-{name}")
        project, coordinator = project_create(owner=person_of(owner), name=f"Project {name}", actor="t", via="t")
        site, _ = project_join(project=project, person=person_of(member), actor="t", via="t")
        world[name] = {"owner": owner, "member": member, "project": project, "coordinator": coordinator, "site": site}
    return world


def _live_superlink(node: Any, port: int) -> NodeSession:
    return NodeSessionFactory(
        node=node, kind="superlink", status="running", pid=4242, runtime_config={"host": "127.0.0.1", "port": port}
    )


# ---------------------------------------------------------------- ports, state and logs of their own
def test_each_project_gets_its_own_superlink_port_and_state_and_the_default_keeps_the_configured_one(
    two_projects: dict[str, Any], settings: Any
) -> None:
    settings.SUPERLINK_PORT_RANGE = (9250, 9252)
    first = services.superlink_request_start(node=two_projects["a"]["coordinator"])
    second = services.superlink_request_start(node=two_projects["b"]["coordinator"])
    default = services.superlink_request_start(node=accounts_services.coordinator_node_ensure())

    a, b, d = (superlink_config(s) for s in (first, second, default))
    assert (a.port, b.port) == (9250, 9251)
    assert d.address == settings.SUPERLINK_ADDRESS
    assert len({a.database, b.database, d.database}) == 3
    assert str(two_projects["a"]["project"].pk) in a.database


def test_a_full_superlink_port_range_is_a_409_naming_listen_address(
    two_projects: dict[str, Any], settings: Any
) -> None:
    settings.SUPERLINK_PORT_RANGE = (9260, 9260)
    services.superlink_request_start(node=two_projects["a"]["coordinator"])

    with pytest.raises(Conflict) as refused:
        services.superlink_request_start(node=two_projects["b"]["coordinator"])
    assert refused.value.field == "listen_address"
    assert NodeSession.objects.filter(node=two_projects["b"]["coordinator"]).count() == 0


def test_a_supernode_dials_its_own_projects_superlink_when_no_address_is_given(two_projects: dict[str, Any]) -> None:
    _live_superlink(two_projects["a"]["coordinator"], 9270)
    _live_superlink(two_projects["b"]["coordinator"], 9271)

    session = participant_services.supernode_request_start(node=two_projects["b"]["site"])

    assert session.runtime_config["superlink_address"] == "127.0.0.1:9271"


def test_a_supernode_of_a_project_without_a_superlink_needs_an_address(two_projects: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        participant_services.supernode_request_start(node=two_projects["a"]["site"])
    assert refused.value.field == "superlink_address"


# ---------------------------------------------------------------- which project a request is about
def test_health_names_the_callers_project_and_the_dashboards_ids(two_projects: dict[str, Any]) -> None:
    a = two_projects["a"]
    _live_superlink(a["coordinator"], 9280)

    body = _client(a["owner"]).get(HEALTH).json()

    assert body["active_project_id"] == str(a["project"].pk)
    assert body["active_coordinator_node_id"] == str(a["coordinator"].pk)
    assert body["active_user_id"] == str(person_of(a["owner"]).pk)
    assert body["superlink_running"] is True and body["superlink_pid"] == "4242"
    assert body["superlink_address"] == "127.0.0.1:9280"
    assert body["default_project_id"] is None  # not a member of the default project


def test_health_of_a_named_project_is_not_found_to_a_stranger(two_projects: dict[str, Any]) -> None:
    b = two_projects["b"]["project"]
    response = _client(two_projects["a"]["owner"]).get(HEALTH, {"project_id": str(b.pk)})

    assert response.status_code == 404 and response.json()["field"] == "project_id"


def test_health_of_a_caller_without_projects_says_nothing_runs(alive: None) -> None:
    body = _client(UserFactory()).get(HEALTH).json()

    assert body["active_project_id"] is None and body["superlink_running"] is False


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"project_id": "not-a-uuid"}, 400, "project_id"),
        ({"user_id": str(uuid.uuid4())}, 403, "user_id"),
        ({"node_id": str(uuid.uuid4())}, 404, "node_id"),
    ],
)
def test_superlink_start_refuses_bad_or_foreign_ids_naming_the_field(
    two_projects: dict[str, Any], body: dict[str, str], status: int, field: str
) -> None:
    response = _client(two_projects["a"]["owner"]).post("/api/coordinator/superlink/start", body, format="json")

    assert response.status_code == status and response.json()["field"] == field
    assert NodeSession.objects.count() == 0


def test_a_coordinator_cannot_start_another_projects_superlink(two_projects: dict[str, Any]) -> None:
    b = two_projects["b"]
    body = {"project_id": str(b["project"].pk), "node_id": str(b["coordinator"].pk)}

    response = _client(two_projects["a"]["owner"]).post("/api/coordinator/superlink/start", body, format="json")

    assert response.status_code == 404
    assert NodeSession.objects.count() == 0


def test_a_participant_of_the_project_may_not_control_its_superlink(two_projects: dict[str, Any]) -> None:
    a = two_projects["a"]
    body = {"project_id": str(a["project"].pk)}

    response = _client(a["member"]).post("/api/coordinator/superlink/start", body, format="json")

    assert response.status_code == 403
    assert NodeSession.objects.count() == 0


def test_the_dashboards_start_body_reaches_the_named_projects_superlink(two_projects: dict[str, Any]) -> None:
    a = two_projects["a"]
    body = {
        "project_id": str(a["project"].pk),
        "node_id": str(a["coordinator"].pk),
        "user_id": str(person_of(a["owner"]).pk),
        "insecure": True,
        "certificates_path": None,
        "listen_address": None,
        "extra_args": [],
    }

    response = _client(a["owner"]).post("/api/coordinator/superlink/start", body, format="json")

    # Accepted and attributed to A's coordinator node: no supervisor runs here, so it is withdrawn (503).
    assert response.status_code == 503
    assert response.json()["detail"].startswith("No supervisor")


def test_a_participant_starts_a_supernode_only_on_its_own_node(two_projects: dict[str, Any]) -> None:
    a, b = two_projects["a"], two_projects["b"]
    _live_superlink(a["coordinator"], 9290)
    foreign = {"project_id": str(b["project"].pk), "node_id": str(b["site"].pk), "superlink_address": "127.0.0.1:1"}

    refused = _client(a["member"]).post("/api/participant/supernode/start", foreign, format="json")
    own = _client(a["member"]).post(
        "/api/participant/supernode/start",
        {"project_id": str(a["project"].pk), "node_id": str(a["site"].pk), "partition_id": 0, "num_partitions": 1},
        format="json",
    )

    assert refused.status_code == 404
    assert own.status_code == 503  # accepted for A's site; no supervisor runs here
    assert NodeSession.objects.filter(kind="supernode").count() == 0


def test_a_pending_join_gives_no_control_until_approved(alive: None) -> None:
    owner, member = UserFactory(), UserFactory()
    project, _ = project_create(owner=person_of(owner), name="Gated", join_policy="approval", actor="t", via="t")
    site, _ = project_join(project=project, person=person_of(member), actor="t", via="t")
    body = {"project_id": str(project.pk), "superlink_address": "127.0.0.1:1"}

    pending = _client(member).post("/api/participant/supernode/start", body, format="json")
    accounts_services.node_join_decide(node=site, approve=True, actor="t", via="t")
    approved = _client(member).post("/api/participant/supernode/start", body, format="json")

    assert pending.status_code == 403 and "approval" in pending.json()["detail"]
    assert approved.status_code == 503  # allowed now; no supervisor runs here
