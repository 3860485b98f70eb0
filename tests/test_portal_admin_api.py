"""The dashboard's `/api/admin/*` data routes: shapes as types.ts says, who may see what, creating projects,
and a fixed number of queries however many rows.

Requests sign in with API tokens, afresh each time, as the dashboard's server does."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import permissions
from accounts.models import Membership, Node, Project
from orchestration.models import FederatedRun
from tests.factories import (
    FederatedRunFactory,
    NodeFactory,
    NodeSessionFactory,
    bearer_client,
    person_of,
    project_coordinated_by,
)
from tests.portal_shapes import (
    NODE,
    PROJECT,
    SESSION,
    _grow_project,
    _user,
    admin_urls,
    check,
    check_dashboard,
    check_detail,
    check_error,
    check_run,
    check_summary,
    world,
)

pytestmark = pytest.mark.django_db

# The fixture of tests/portal_shapes.py: pytest finds it by this name here.
SHARED_FIXTURES = (world,)


# ----------------------------------------------------------------- who may see what
def test_anonymous_is_401_everywhere_in_json(world: dict[str, Any]) -> None:
    client = bearer_client()
    p = world["project"].pk
    for url in [*admin_urls(world), "/api/admin/projects", "/api/admin/nonsense", f"/api/admin/projects/{p}/x"]:
        check_error(client.get(url), 401)
    for url in ["/api/admin/projects", f"/api/admin/projects/{p}/joins/{world['pending'].pk}/approve"]:
        check_error(client.post(url, {"name": "x"}, format="json"), 401)
    assert Project.objects.count() == 2
    assert Node.objects.get(pk=world["pending"].pk).join_status == "pending"


@pytest.mark.parametrize("who", ["owner", "granted", "staff"])
def test_coordinators_and_staff_see_every_admin_route(world: dict[str, Any], who: str) -> None:
    client = bearer_client(world["users"][who])
    for url in admin_urls(world):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("who", ["participant", "stranger"])
def test_a_project_the_caller_does_not_coordinate_is_not_found(world: dict[str, Any], who: str) -> None:
    client = bearer_client(world["users"][who])
    for url in admin_urls(world):
        field = "projectId" if "projectId=" in url else "project_id"
        check_error(client.get(url), 404, field)
    missing = uuid.uuid4()
    check_error(client.get(f"/api/admin/projects/{missing}"), 404, "project_id")  # the same answer as a real one


def test_ids_that_are_not_uuids_are_a_json_404_and_project_id_param_a_400(world: dict[str, Any]) -> None:
    client = bearer_client(world["users"]["owner"])
    p = world["project"].pk
    for url in ["/api/admin/projects/nope", f"/api/admin/projects/{p}/runs/nope", f"/api/admin/projects/{p}/zzz"]:
        check_error(client.get(url), 404)
    check_error(client.get("/api/admin/dashboard"), 400, "projectId")
    check_error(client.get("/api/admin/dashboard?projectId="), 400, "projectId")
    check_error(client.get("/api/admin/dashboard?projectId=12"), 400, "projectId")
    check_error(client.get(f"/api/admin/projects/{p}/runs/{uuid.uuid4()}"), 404, "run_id")
    other_run = FederatedRunFactory(project=world["other"])
    check_error(client.get(f"/api/admin/projects/{p}/runs/{other_run.pk}"), 404, "run_id")


def test_projects_list_holds_only_what_the_caller_coordinates(world: dict[str, Any]) -> None:
    def listed(who: str) -> set[str]:
        response = bearer_client(world["users"][who]).get("/api/admin/projects")
        assert response.status_code == 200
        return {item["project"]["id"] for item in response.json()}

    mine, other = str(world["project"].pk), str(world["other"].pk)
    assert listed("owner") == {mine}
    assert listed("granted") == {mine}
    assert listed("participant") == set()
    assert listed("stranger") == {other}
    assert listed("staff") == {mine, other}
    # The list agrees with the one place that says who coordinates what.
    for who, user in world["users"].items():
        expected = {str(p.pk) for p in Project.objects.all() if permissions.can_control_federation(user, p)}
        assert listed(who) == expected, who


# ----------------------------------------------------------------- shapes
def test_projects_list_summary_shape_counts_and_latest_run(world: dict[str, Any]) -> None:
    body = bearer_client(world["users"]["owner"]).get("/api/admin/projects").json()
    assert isinstance(body, list) and len(body) == 1
    summary = body[0]
    check_summary(summary)
    # Approved nodes only: the pending join is not (yet) a participant.
    assert (summary["nodeCount"], summary["coordinatorCount"], summary["participantCount"]) == (2, 1, 1)
    assert summary["activeRunCount"] == 1  # `starting` is live in FedML
    # Latest by started_at, a run never started last: the completed run, not the newer starting one.
    assert summary["latestRun"]["id"] == str(world["done"].pk)
    assert summary["latestRun"]["metrics"]["train"] == {"1": {"loss": 0.5}}
    assert summary["project"]["join_policy"] == "open"
    assert summary["project"]["created_by"] == str(person_of(world["users"]["owner"]).pk)


def test_project_detail_shape_and_stats(world: dict[str, Any]) -> None:
    body = bearer_client(world["users"]["granted"]).get(f"/api/admin/projects/{world['project'].pk}").json()
    check_detail(body)
    assert body["stats"]["activeRun"]["id"] == str(world["live"].pk)
    assert body["stats"]["latestRun"]["id"] == str(world["done"].pk)
    assert body["stats"]["participantCount"] == 1


def test_project_nodes_shape_hides_secrets_and_pending_joins(world: dict[str, Any]) -> None:
    body = bearer_client(world["users"]["owner"]).get(f"/api/admin/projects/{world['project'].pk}/nodes").json()
    assert set(body) == {"nodes", "sessions"}
    for node in body["nodes"]:
        check(node, NODE, "node")
    for session in body["sessions"]:
        check(session, SESSION, "session")
    assert [n["id"] for n in body["nodes"]] == [str(world["coordinator_node"].pk), str(world["site"].pk)]
    assert {n["join_status"] for n in body["nodes"]} == {"approved"}
    configs = {s["id"]: s["runtime_config"] for s in body["sessions"]}
    assert configs[str(world["supernode"].pk)] == {"partition_id": 0}
    assert configs[str(world["superlink"].pk)] == {"listen_address": "0.0.0.0:9092"}


def test_run_detail_pairs_sessions_alive_during_the_run(world: dict[str, Any]) -> None:
    done = world["done"]
    site_b = NodeFactory(project=world["project"], role="participant")
    # Ended as the run started: one of its sessions; ended a minute before: not.
    NodeSessionFactory(
        node=site_b, status="exited", started_at=done.started_at - timedelta(hours=5), ended_at=done.started_at
    )
    NodeSessionFactory(
        node=site_b,
        status="exited",
        started_at=done.started_at - timedelta(hours=5),
        ended_at=done.started_at - timedelta(minutes=1),
    )
    NodeSessionFactory(node=NodeFactory(project=world["other"]), status="running", started_at=done.started_at)
    response = bearer_client(world["users"]["owner"]).get(f"/api/admin/projects/{world['project'].pk}/runs/{done.pk}")
    body = response.json()
    assert set(body) == {"run", "coordinatorSession", "participantSessions"}
    check_run(body["run"])
    assert body["run"]["log_stream"] == "run log"
    coordinator = body["coordinatorSession"]
    assert set(coordinator) == {"session", "node"}
    check(coordinator["session"], SESSION, "coordinator session")
    check(coordinator["node"], NODE, "coordinator node")
    assert coordinator["session"]["id"] == str(world["superlink"].pk)
    pairs = [(p["node"]["id"], p["session"]["status"]) for p in body["participantSessions"]]
    assert pairs == [(str(world["site"].pk), "running"), (str(site_b.pk), "exited")]
    for pair in body["participantSessions"]:
        check(pair["session"], SESSION, "participant session")
        assert "auth_private_key" not in pair["session"]["runtime_config"]


def test_admin_dashboard_shape(world: dict[str, Any]) -> None:
    body = bearer_client(world["users"]["owner"]).get(f"/api/admin/dashboard?projectId={world['project'].pk}").json()
    check_dashboard(body)
    assert body["activeRun"]["id"] == str(world["live"].pk)
    assert [r["id"] for r in body["recentRuns"]] == [str(world["live"].pk), str(world["done"].pk)]
    assert {s["id"] for s in body["nodeSessions"]} == {str(world["superlink"].pk), str(world["supernode"].pk)}


# ----------------------------------------------------------------- creating projects
def test_create_project_makes_the_caller_its_coordinator(world: dict[str, Any]) -> None:
    user = world["users"]["participant"]
    client = bearer_client(user)
    response = client.post("/api/admin/projects", {"name": "Brain MRI", "description": "  T1  "}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"project", "coordinator_node"}
    check(body["project"], PROJECT, "project")
    check(body["coordinator_node"], NODE, "coordinator_node")
    assert body["project"]["slug"] == "brain-mri"
    assert body["project"]["description"] == "T1"
    assert body["project"]["join_policy"] == "open"
    assert body["coordinator_node"]["role"] == "coordinator"
    assert body["coordinator_node"]["external_id"] == "brain-mri-coordinator"
    assert body["coordinator_node"]["user_id"] == str(person_of(user).pk)
    assert client.get(f"/api/admin/projects/{body['project']['id']}").status_code == 200
    assert {s["project"]["id"] for s in client.get("/api/admin/projects").json()} == {body["project"]["id"]}


def test_two_projects_named_the_same_get_unique_slugs_and_external_ids(world: dict[str, Any]) -> None:
    client = bearer_client(world["users"]["owner"])
    made = [client.post("/api/admin/projects", {"name": "Same Name"}, format="json").json() for _ in range(3)]
    assert [m["project"]["slug"] for m in made] == ["same-name", "same-name-1", "same-name-2"]
    external = [m["coordinator_node"]["external_id"] for m in made]
    assert external == ["same-name-coordinator", "same-name-1-coordinator", "same-name-2-coordinator"]
    again = client.post(
        "/api/admin/projects",
        {"name": "X", "slug": "same-name", "coordinator_external_id": "same-name-coordinator"},
        format="json",
    ).json()
    assert again["project"]["slug"] == "same-name-3"
    assert again["coordinator_node"]["external_id"] == "same-name-coordinator-1"


def test_create_project_with_the_approval_policy(world: dict[str, Any]) -> None:
    client = bearer_client(world["users"]["owner"])
    response = client.post("/api/admin/projects", {"name": "Gated", "join_policy": "approval"}, format="json")
    assert response.status_code == 201
    assert response.json()["project"]["join_policy"] == "approval"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 7}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "join_policy": "whoever"}, "join_policy"),
        ({"name": "ok", "description": ["a"]}, "description"),
        ({"name": "ok", "coordinator_external_id": "x" * 201}, "coordinator_external_id"),
        ([], "body"),
    ],
)
def test_bad_create_input_is_a_400_naming_the_field_and_creates_nothing(
    world: dict[str, Any], payload: Any, field: str
) -> None:
    before = (Project.objects.count(), Node.objects.count(), Membership.objects.count())
    response = bearer_client(world["users"]["owner"]).post("/api/admin/projects", payload, format="json")
    check_error(response, 400, field)
    assert (Project.objects.count(), Node.objects.count(), Membership.objects.count()) == before


def test_create_project_answers_403_where_only_admins_create(world: dict[str, Any], settings: Any) -> None:
    settings.PROJECT_CREATORS = "admin"
    response = bearer_client(world["users"]["owner"]).post("/api/admin/projects", {"name": "No"}, format="json")
    check_error(response, 403)
    assert Project.objects.count() == 2


# ----------------------------------------------------------------- query counts
def _queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def test_projects_list_queries_do_not_grow_with_projects() -> None:
    owner, staff = _user("owner"), _user("staff", is_staff=True)
    project_coordinated_by(owner)
    counts = {}
    for size in (1, 20):
        while Project.objects.count() < size:
            project, _ = project_coordinated_by(owner)
            _grow_project(project, 2)
        counts[size] = (
            _queries(bearer_client(owner), "/api/admin/projects"),
            _queries(bearer_client(staff), "/api/admin/projects"),
        )
        assert len(bearer_client(owner).get("/api/admin/projects").json()) == size
    assert counts[1] == counts[20], counts


def test_project_routes_queries_do_not_grow_with_nodes_sessions_and_runs(world: dict[str, Any]) -> None:
    project, run = world["project"], world["done"]
    client = bearer_client(world["users"]["granted"])  # a grant: the longer permission path
    urls = [
        f"/api/admin/projects/{project.pk}",
        f"/api/admin/projects/{project.pk}/nodes",
        f"/api/admin/projects/{project.pk}/runs",
        f"/api/admin/projects/{project.pk}/runs/{run.pk}",
        f"/api/admin/projects/{project.pk}/joins?status=pending,approved",
        f"/api/admin/dashboard?projectId={project.pk}",
    ]
    before = [_queries(client, url) for url in urls]
    _grow_project(project, 20)
    for _ in range(20):
        NodeFactory(project=project, role="participant", join_status="pending")
    FederatedRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=4), ended_at=None)
    after = [_queries(client, url) for url in urls]
    assert before == after, list(zip(urls, before, after, strict=True))
    detail = client.get(f"/api/admin/projects/{project.pk}/runs/{run.pk}").json()
    assert len(detail["participantSessions"]) == 21


# ----------------------------------------------------------------- the audit log
def test_creates_are_audited_once_and_refusals_by_what_was_asked(world: dict[str, Any]) -> None:
    from accounts.models import AuditEvent

    client = bearer_client(world["users"]["owner"])
    AuditEvent.objects.all().delete()
    assert client.post("/api/admin/projects", {"name": "Audited"}, format="json").status_code == 201
    assert client.post("/api/admin/projects", {"name": ""}, format="json").status_code == 400
    bearer_client().get("/api/admin/projects")
    events = list(AuditEvent.objects.order_by("at", "id").values_list("action", "outcome"))
    assert events == [("project.create", "ok"), ("project.create", "error"), ("GET /api/admin/projects", "denied")]
