"""What the portal tests share: the shapes the dashboard's data routes answer in (frontend/lib/fetchers/types.ts)
and their checkers, and a project with everyone around it (the `world` fixture) to ask those routes about."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Project
from accounts.services import membership_set
from tests.factories import (
    FederatedRunFactory,
    NodeFactory,
    NodeSessionFactory,
    participant_node_of,
    project_coordinated_by,
)

# ----------------------------------------------------------------- shapes (frontend/lib/fetchers/types.ts)
ID, TEXT, STAMP, JSON = "uuid", "text", "stamp", "json"
INT = "int"


def nullable(kind: str) -> tuple[str, None]:
    return (kind, None)


PROJECT = {
    "id": ID,
    "slug": TEXT,
    "name": TEXT,
    "description": nullable(TEXT),
    "config": nullable(JSON),
    "created_by": nullable(ID),
    "created_at": STAMP,
    "updated_at": STAMP,
    "join_policy": TEXT,  # FedML's extra
}
NODE = {
    "id": ID,
    "project_id": ID,
    "user_id": nullable(ID),
    "external_id": TEXT,
    "role": TEXT,
    "display_name": nullable(TEXT),
    "metadata": nullable(JSON),
    "created_at": STAMP,
    "updated_at": STAMP,
    "join_status": TEXT,  # FedML's extra
}
SESSION = {
    "id": ID,
    "node_id": ID,
    "status": TEXT,
    "pid": nullable(INT),
    "started_at": nullable(STAMP),
    "ended_at": nullable(STAMP),
    "runtime_config": nullable(JSON),
    "log_stream": nullable(TEXT),
    "created_at": STAMP,
    "kind": TEXT,  # FedML's extra
}
RUN = {
    "id": ID,
    "project_id": ID,
    "status": TEXT,
    "label": nullable(TEXT),
    "config": nullable(JSON),
    "coordinator_session_id": nullable(ID),
    "started_at": nullable(STAMP),
    "ended_at": nullable(STAMP),
    "log_stream": nullable(TEXT),
    "metrics": nullable(JSON),
    "flower_run_id": nullable(TEXT),  # FedML's extras
    "created_at": STAMP,
}


def _is(kind: str, value: Any) -> bool:
    if kind == ID:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    if kind == TEXT:
        return isinstance(value, str)
    if kind == STAMP:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, dict | list | str | int | float | bool)


def check(value: Any, shape: dict[str, Any], where: str = "") -> None:
    """Exactly these keys, each of its JSON type (a tuple: any of them; None: null)."""
    assert isinstance(value, dict), f"{where}: {value!r}"
    assert set(value) == set(shape), f"{where}: keys {sorted(value)} != {sorted(shape)}"
    for key, kind in shape.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        item = value[key]
        assert any(item is None if k is None else _is(k, item) for k in kinds), f"{where}.{key}: {item!r}"


def check_run(value: Any, where: str = "run") -> None:
    check(value, RUN, where)


def check_summary(value: Any) -> None:
    assert set(value) == {"project", "nodeCount", "coordinatorCount", "participantCount", "activeRunCount", "latestRun"}
    check(value["project"], PROJECT, "project")
    for key in ("nodeCount", "coordinatorCount", "participantCount", "activeRunCount"):
        assert _is(INT, value[key]), key
    if value["latestRun"] is not None:
        check_run(value["latestRun"], "latestRun")


def check_detail(value: Any) -> None:
    assert set(value) == {"project", "stats"}
    check(value["project"], PROJECT, "project")
    stats = value["stats"]
    assert set(stats) == {"nodeCount", "coordinatorCount", "participantCount", "activeRun", "latestRun"}
    for key in ("activeRun", "latestRun"):
        if stats[key] is not None:
            check_run(stats[key], key)


def check_dashboard(value: Any) -> None:
    assert set(value) == {"project", "nodes", "nodeSessions", "activeRun", "recentRuns"}
    check(value["project"], PROJECT, "project")
    for node in value["nodes"]:
        check(node, NODE, "node")
    for session in value["nodeSessions"]:
        check(session, SESSION, "session")
    if value["activeRun"] is not None:
        check_run(value["activeRun"], "activeRun")
    for run in value["recentRuns"]:
        check_run(run, "recentRun")


def check_error(response: Any, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["field"] == field, body


# ----------------------------------------------------------------- a project and everyone around it
def _user(name: str, **kwargs: Any) -> Any:
    return get_user_model().objects.create_user(username=name, password="pw-123456-xyz", **kwargs)


@pytest.fixture
def world() -> dict[str, Any]:
    users = {name: _user(name) for name in ("owner", "granted", "participant", "stranger")}
    users["staff"] = _user("staff", is_staff=True)
    project, coordinator_node = project_coordinated_by(users["owner"], name="Chest X-ray")
    membership_set(user=users["granted"], project=project, role="coordinator", node=None, actor="t", via="t")
    site = participant_node_of(users["participant"], project, display_name="Site A")
    pending = NodeFactory(project=project, role="participant", join_status="pending")
    other, _ = project_coordinated_by(users["stranger"], name="Other study")
    now = timezone.now()
    superlink = NodeSessionFactory(
        node=coordinator_node,
        kind="superlink",
        status="running",
        pid=4242,
        started_at=now - timedelta(hours=2),
        runtime_config={"listen_address": "0.0.0.0:9092", "process": {"pgid": 1}},
    )
    supernode = NodeSessionFactory(
        node=site,
        status="running",
        started_at=now - timedelta(hours=2),
        runtime_config={"partition_id": 0, "auth_private_key": "/secret/key.pem", "process": {"pgid": 2}},
        log_stream="hello",
    )
    done = FederatedRunFactory(
        project=project,
        status="completed",
        label="baseline",
        started_at=now - timedelta(hours=1, minutes=30),
        ended_at=now - timedelta(hours=1),
        coordinator_session=superlink,
        metrics={"train": {"1": {"loss": 0.5}}, "evaluate": {"1": {"accuracy": 0.8}}, "last_round": 1},
        log_stream="run log",
    )
    live = FederatedRunFactory(project=project, status="starting", label="second")  # not started yet
    return {
        "users": users,
        "project": project,
        "coordinator_node": coordinator_node,
        "site": site,
        "pending": pending,
        "other": other,
        "superlink": superlink,
        "supernode": supernode,
        "done": done,
        "live": live,
    }


def admin_urls(w: dict[str, Any]) -> list[str]:
    p = w["project"].pk
    return [
        f"/api/admin/projects/{p}",
        f"/api/admin/projects/{p}/nodes",
        f"/api/admin/projects/{p}/runs",
        f"/api/admin/projects/{p}/runs/{w['done'].pk}",
        f"/api/admin/projects/{p}/joins",
        f"/api/admin/dashboard?projectId={p}",
    ]


def _grow_project(project: Project, n: int) -> None:
    for _ in range(n):
        node = NodeFactory(project=project, role="participant")
        NodeSessionFactory(node=node, status="running", started_at=timezone.now() - timedelta(hours=3))
        FederatedRunFactory(project=project, status="completed", started_at=timezone.now() - timedelta(hours=2))
