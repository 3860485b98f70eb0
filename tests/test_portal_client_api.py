"""The dashboard's `/api/client/*` data routes: anyone signed in lists and views projects; the dashboard needs a
standing, and a participant sees only its own nodes' sessions."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import (
    FederatedRunFactory,
    NodeFactory,
    NodeSessionFactory,
    bearer_client,
    participant_node_of,
    project_coordinated_by,
)
from tests.portal_shapes import check_dashboard, check_detail, check_error, check_summary

pytestmark = pytest.mark.django_db


def _user(name: str, **kwargs: Any) -> Any:
    return get_user_model().objects.create_user(username=name, password="pw-123456-xyz", **kwargs)


@pytest.fixture
def world() -> dict[str, Any]:
    users = {name: _user(name) for name in ("owner", "site_a", "site_b", "stranger")}
    users["staff"] = _user("staff", is_staff=True)
    project, coordinator_node = project_coordinated_by(users["owner"], name="Chest X-ray")
    node_a = participant_node_of(users["site_a"], project)
    node_b = participant_node_of(users["site_b"], project)
    pending = NodeFactory(project=project, role="participant", join_status="pending")
    started = timezone.now() - timedelta(hours=1)
    sessions = {
        "superlink": NodeSessionFactory(node=coordinator_node, kind="superlink", status="running", started_at=started),
        "a": NodeSessionFactory(node=node_a, status="running", started_at=started, log_stream="site a's log"),
        "b": NodeSessionFactory(node=node_b, status="running", started_at=started, log_stream="site b's log"),
    }
    live = FederatedRunFactory(
        project=project, status="running", started_at=started, log_stream="flwr run output", metrics={"last_round": 0}
    )
    return {
        "users": users,
        "project": project,
        "node_a": node_a,
        "node_b": node_b,
        "pending": pending,
        "sessions": sessions,
        "live": live,
    }


def test_anonymous_is_401(world: dict[str, Any]) -> None:
    client = bearer_client()
    p = world["project"].pk
    for path in ["/api/client/projects", f"/api/client/projects/{p}", f"/api/client/dashboard?projectId={p}"]:
        check_error(client.get(path), 401)
    check_error(client.post(f"/api/client/projects/{p}/join", {}, format="json"), 401)


@pytest.mark.parametrize("who", ["owner", "site_a", "stranger", "staff"])
def test_anyone_signed_in_lists_and_views_projects(world: dict[str, Any], who: str) -> None:
    client = bearer_client(world["users"][who])
    listed = client.get("/api/client/projects").json()
    assert [s["project"]["id"] for s in listed] == [str(world["project"].pk)]
    check_summary(listed[0])
    assert (listed[0]["nodeCount"], listed[0]["participantCount"], listed[0]["activeRunCount"]) == (3, 2, 1)
    detail = client.get(f"/api/client/projects/{world['project'].pk}").json()
    check_detail(detail)
    assert detail["stats"]["activeRun"]["id"] == str(world["live"].pk)
    # Aggregated metrics for members; someone who only browses sees that a run exists, not its results.
    expected = None if who == "stranger" else {"last_round": 0}
    assert detail["stats"]["activeRun"]["metrics"] == expected


def test_a_runs_log_is_shown_only_to_those_who_may_read_it(world: dict[str, Any]) -> None:
    def logs(who: str) -> tuple[Any, Any]:
        client = bearer_client(world["users"][who])
        listed = client.get("/api/client/projects").json()[0]["latestRun"]["log_stream"]
        detail = client.get(f"/api/client/projects/{world['project'].pk}").json()["stats"]["activeRun"]["log_stream"]
        return listed, detail

    for who in ("owner", "site_a", "staff"):
        assert logs(who) == ("flwr run output", "flwr run output"), who
    assert logs("stranger") == (None, None)


def test_unknown_projects_are_404_and_bad_ids_json(world: dict[str, Any]) -> None:
    client = bearer_client(world["users"]["site_a"])
    check_error(client.get(f"/api/client/projects/{uuid.uuid4()}"), 404, "project_id")
    check_error(client.get("/api/client/projects/not-a-uuid"), 404)
    check_error(client.get(f"/api/client/dashboard?projectId={uuid.uuid4()}"), 404, "projectId")
    check_error(client.get("/api/client/dashboard"), 400, "projectId")
    check_error(client.get("/api/client/dashboard?projectId=../x"), 400, "projectId")


def test_dashboard_needs_a_standing(world: dict[str, Any]) -> None:
    url = f"/api/client/dashboard?projectId={world['project'].pk}"
    check_error(bearer_client(world["users"]["stranger"]).get(url), 403)
    pending_user = _user("pending")
    participant_node_of(pending_user, world["project"], join_status="pending")
    check_error(bearer_client(pending_user).get(url), 403)


def test_a_participant_sees_only_its_own_nodes_sessions(world: dict[str, Any]) -> None:
    body = bearer_client(world["users"]["site_a"]).get(f"/api/client/dashboard?projectId={world['project'].pk}")
    assert body.status_code == 200, body.content
    data = body.json()
    check_dashboard(data)
    assert [s["id"] for s in data["nodeSessions"]] == [str(world["sessions"]["a"].pk)]
    assert "site b's log" not in body.content.decode()
    # The roster (approved nodes) and the run, with its aggregated metrics, are the project's.
    assert {n["id"] for n in data["nodes"]} >= {str(world["node_a"].pk), str(world["node_b"].pk)}
    assert str(world["pending"].pk) not in {n["id"] for n in data["nodes"]}
    assert data["activeRun"]["id"] == str(world["live"].pk)
    assert [r["id"] for r in data["recentRuns"]] == [str(world["live"].pk)]


@pytest.mark.parametrize("who", ["owner", "staff"])
def test_coordinators_and_staff_see_every_session(world: dict[str, Any], who: str) -> None:
    data = bearer_client(world["users"][who]).get(f"/api/client/dashboard?projectId={world['project'].pk}").json()
    check_dashboard(data)
    assert {s["id"] for s in data["nodeSessions"]} == {str(s.pk) for s in world["sessions"].values()}


def test_a_participant_with_two_nodes_sees_both(world: dict[str, Any]) -> None:
    from accounts.services import membership_set

    user = world["users"]["site_a"]
    membership_set(user=user, project=world["project"], role="participant", node=world["node_b"], actor="t", via="t")
    # One grant per user and project: the grant to node B, and the node A the user owns.
    data = bearer_client(user).get(f"/api/client/dashboard?projectId={world['project'].pk}").json()
    assert {s["id"] for s in data["nodeSessions"]} == {str(world["sessions"]["a"].pk), str(world["sessions"]["b"].pk)}


# ----------------------------------------------------------------- query counts
def _queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def test_queries_do_not_grow_with_projects_nodes_sessions_or_runs(world: dict[str, Any]) -> None:
    project = world["project"]
    clients = {who: bearer_client(world["users"][who]) for who in ("site_a", "stranger", "staff")}
    urls = ["/api/client/projects", f"/api/client/projects/{project.pk}"]
    dashboard = f"/api/client/dashboard?projectId={project.pk}"
    before = {who: [_queries(c, u) for u in urls] for who, c in clients.items()}
    dashboard_before = _queries(clients["site_a"], dashboard), _queries(clients["staff"], dashboard)
    for i in range(20):
        other, _ = project_coordinated_by(_user(f"owner-{i}"))
        participant_node_of(world["users"]["site_a"], other)
        FederatedRunFactory(project=other, status="completed", started_at=timezone.now())
        node = NodeFactory(project=project, role="participant")
        NodeSessionFactory(node=node, status="running")
        NodeSessionFactory(node=world["node_a"], status="exited")
        FederatedRunFactory(project=project, status="failed")
    after = {who: [_queries(c, u) for u in urls] for who, c in clients.items()}
    assert before == after
    assert (_queries(clients["site_a"], dashboard), _queries(clients["staff"], dashboard)) == dashboard_before
    assert len(clients["stranger"].get("/api/client/projects").json()) == 21


def test_the_register_pages_signup_says_accounts_come_from_an_administrator(client: Any) -> None:
    response = client.post("/api/auth/signup", {"email": "a@b.c", "password": "x"}, content_type="application/json")

    assert response.status_code == 403
    assert "administrator" in response.json()["error"]["message"]


def test_an_api_path_that_does_not_exist_answers_json(client: Any) -> None:
    response = client.get("/api/nothing/here")

    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["field"] is None
