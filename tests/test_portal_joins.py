"""Joining a project (`POST /api/client/projects/<id>/join`) and a coordinator's approval of joins
(`/api/admin/projects/<id>/joins...`): idempotent, unique external ids, and refusals that change nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from accounts.models import AuditEvent, Node
from tests.factories import NodeFactory, bearer_client, person_of, project_coordinated_by
from tests.portal_shapes import NODE, PROJECT, _user, check, check_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> Any:
    return _user("owner")


@pytest.fixture
def open_project(owner: Any) -> Any:
    return project_coordinated_by(owner, name="Open Study")[0]


@pytest.fixture
def gated_project(owner: Any) -> Any:
    return project_coordinated_by(owner, name="Gated Study", join_policy="approval")[0]


def join(user: Any, project: Any, payload: Any = None) -> Any:
    return bearer_client(user).post(f"/api/client/projects/{project.pk}/join", payload or {}, format="json")


def check_join(response: Any, status: int, *, already: bool, join_status: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"project", "node", "already_registered"}
    check(body["project"], PROJECT, "project")
    check(body["node"], NODE, "node")
    assert body["already_registered"] is already
    assert body["node"]["role"] == "participant"
    assert body["node"]["join_status"] == join_status
    return body


def test_join_is_idempotent(open_project: Any) -> None:
    user = _user("site")
    first = check_join(join(user, open_project), 201, already=False, join_status="approved")
    again = check_join(join(user, open_project, {"display_name": "Other"}), 200, already=True, join_status="approved")
    assert again["node"] == first["node"]
    assert Node.objects.filter(project=open_project, user=person_of(user)).count() == 1
    assert first["node"]["user_id"] == str(person_of(user).pk)
    assert first["node"]["metadata"]["registered_via"] == "client_portal"
    dashboard = bearer_client(user).get(f"/api/client/dashboard?projectId={open_project.pk}")
    assert dashboard.status_code == 200


def test_join_without_a_body_as_the_dashboard_may_send_it(open_project: Any) -> None:
    response = bearer_client(_user("site")).post(f"/api/client/projects/{open_project.pk}/join")
    check_join(response, 201, already=False, join_status="approved")


def test_external_ids_are_made_unique(open_project: Any) -> None:
    a = check_join(
        join(_user("a"), open_project, {"external_id": "Hospital A"}), 201, already=False, join_status="approved"
    )
    b = check_join(
        join(_user("b"), open_project, {"external_id": "hospital-a"}), 201, already=False, join_status="approved"
    )
    assert (a["node"]["external_id"], b["node"]["external_id"]) == ("hospital-a", "hospital-a-1")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"display_name": 5}, "display_name"),
        ({"external_id": "x" * 201}, "external_id"),
        ({"role": "coordinator"}, "role"),
        ([1], "body"),
    ],
)
def test_bad_join_input_is_a_400_and_joins_nothing(open_project: Any, payload: Any, field: str) -> None:
    before = Node.objects.count()
    check_error(join(_user("site"), open_project, payload), 400, field)
    assert Node.objects.count() == before


def test_joining_an_unknown_project_is_404(open_project: Any) -> None:
    check_error(join(_user("site"), type("P", (), {"pk": uuid.uuid4()})()), 404, "project_id")


def test_the_approval_flow(owner: Any, gated_project: Any) -> None:
    site, stranger = _user("site"), _user("stranger")
    p = gated_project.pk
    waiting = check_join(join(site, gated_project), 202, already=False, join_status="pending")
    node_id = waiting["node"]["id"]
    check_join(join(site, gated_project), 202, already=True, join_status="pending")  # still waiting, same node
    check_error(bearer_client(site).get(f"/api/client/dashboard?projectId={p}"), 403)
    summary = bearer_client(site).get(f"/api/client/projects/{p}").json()
    assert summary["stats"]["participantCount"] == 0

    coordinator = bearer_client(owner)
    listed = coordinator.get(f"/api/admin/projects/{p}/joins?status=pending").json()
    assert [n["id"] for n in listed["joins"]] == [node_id]
    assert coordinator.get(f"/api/admin/projects/{p}/joins").json() == listed  # pending by default
    assert coordinator.get(f"/api/admin/projects/{p}/joins?status=approved").json() == {"joins": []}
    assert node_id not in {n["id"] for n in coordinator.get(f"/api/admin/projects/{p}/nodes").json()["nodes"]}

    # Neither the applicant nor a stranger decides.
    for user in (site, stranger):
        check_error(bearer_client(user).post(f"/api/admin/projects/{p}/joins/{node_id}/approve"), 404, "project_id")
    assert Node.objects.get(pk=node_id).join_status == "pending"

    approved = coordinator.post(f"/api/admin/projects/{p}/joins/{node_id}/approve")
    assert approved.status_code == 200, approved.content
    assert set(approved.json()) == {"node"}
    check(approved.json()["node"], NODE, "node")
    assert approved.json()["node"]["join_status"] == "approved"
    assert coordinator.post(f"/api/admin/projects/{p}/joins/{node_id}/approve").status_code == 200  # idempotent
    check_error(coordinator.post(f"/api/admin/projects/{p}/joins/{node_id}/refuse"), 409, "node_id")
    assert Node.objects.get(pk=node_id).join_status == "approved"

    check_join(join(site, gated_project), 200, already=True, join_status="approved")
    assert bearer_client(site).get(f"/api/client/dashboard?projectId={p}").status_code == 200
    assert coordinator.get(f"/api/admin/projects/{p}").json()["stats"]["participantCount"] == 1
    assert AuditEvent.objects.filter(action="project.join_decide", outcome="ok").count() == 1
    assert AuditEvent.objects.filter(action="project.join_decide", outcome="error").count() == 3


def test_a_refused_join_stays_refused(owner: Any, gated_project: Any) -> None:
    site = _user("site")
    p = gated_project.pk
    node_id = join(site, gated_project).json()["node"]["id"]
    refused = bearer_client(owner).post(f"/api/admin/projects/{p}/joins/{node_id}/refuse")
    assert refused.status_code == 200 and refused.json()["node"]["join_status"] == "refused"
    check_error(join(site, gated_project), 403)
    check_error(bearer_client(site).get(f"/api/client/dashboard?projectId={p}"), 403)
    listed = bearer_client(owner).get(f"/api/admin/projects/{p}/joins?status=refused").json()["joins"]
    assert [n["id"] for n in listed] == [node_id]


def test_deciding_a_node_of_another_project_or_a_coordinator_node(owner: Any, gated_project: Any) -> None:
    p = gated_project.pk
    coordinator = bearer_client(owner)
    elsewhere = NodeFactory(role="participant", join_status="pending")
    check_error(coordinator.post(f"/api/admin/projects/{p}/joins/{elsewhere.pk}/approve"), 404, "node_id")
    check_error(coordinator.post(f"/api/admin/projects/{p}/joins/{uuid.uuid4()}/approve"), 404, "node_id")
    check_error(coordinator.post(f"/api/admin/projects/{p}/joins/not-a-uuid/approve"), 404)
    own = Node.objects.get(project=gated_project, role="coordinator")
    check_error(coordinator.post(f"/api/admin/projects/{p}/joins/{own.pk}/refuse"), 400, "node_id")
    assert Node.objects.get(pk=elsewhere.pk).join_status == "pending"
    assert Node.objects.get(pk=own.pk).join_status == "approved"
    check_error(coordinator.get(f"/api/admin/projects/{p}/joins?status=maybe"), 400, "status")


def test_staff_may_decide_joins(gated_project: Any) -> None:
    staff = _user("staff", is_staff=True)
    node_id = join(_user("site"), gated_project).json()["node"]["id"]
    response = bearer_client(staff).post(f"/api/admin/projects/{gated_project.pk}/joins/{node_id}/approve")
    assert response.status_code == 200 and response.json()["node"]["join_status"] == "approved"
