"""GET /api/coordinator/health and /api/participant/health: field names, state, idempotent set-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services as accounts_services
from orchestration.models import Node, Project
from tests.factories import FederatedRunFactory, NodeSessionFactory, SupervisorHeartbeatFactory, staff_api_client

COORDINATOR = "/api/coordinator/health"
PARTICIPANT = "/api/participant/health"

COORDINATOR_FIELDS = {
    "superlink_running",
    "run_active",
    "superlink_started_at",
    "run_info",
    "default_project_id",
    "active_project_id",
    "default_coordinator_node_id",
    "active_coordinator_node_id",
    "supervisor_alive",
}
PARTICIPANT_FIELDS = {"supernode_running", "started_at", "log_path", "session_id", "project_id", "node_id"}


# ---------------------------------------------------------------- coordinator
@pytest.mark.django_db
def test_coordinator_health_on_an_empty_database_reports_nothing_running(api_client):
    response = api_client.get(COORDINATOR)

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= COORDINATOR_FIELDS
    assert body["superlink_running"] is False
    assert body["superlink_started_at"] is None
    assert body["run_active"] is False
    assert body["run_info"] is None
    assert body["supervisor_alive"] is False
    assert "python manage.py runsupervisor" in body["supervisor_hint"]
    coordinator = Node.objects.get(external_id="coordinator")
    assert coordinator.role == "coordinator"
    assert body["default_coordinator_node_id"] == body["active_coordinator_node_id"] == str(coordinator.id)
    assert body["default_project_id"] == body["active_project_id"] == str(coordinator.project_id)


@pytest.mark.django_db
def test_coordinator_health_creates_the_configured_project_and_node_once(api_client, settings):
    first = api_client.get(COORDINATOR).json()
    second = api_client.get(COORDINATOR).json()

    assert Project.objects.filter(slug=settings.PROJECT_SLUG).count() == 1
    assert Project.objects.get(slug=settings.PROJECT_SLUG).name == settings.PROJECT_NAME
    assert Node.objects.filter(external_id=settings.COORDINATOR_NODE_ID).count() == 1
    assert Node.objects.count() == 1
    assert first["default_project_id"] == second["default_project_id"]
    assert first["default_coordinator_node_id"] == second["default_coordinator_node_id"]


@pytest.mark.django_db
def test_coordinator_health_reports_a_running_superlink_and_the_live_run(api_client):
    coordinator = accounts_services.coordinator_node_ensure()
    started = timezone.now() - timedelta(minutes=3)
    superlink = NodeSessionFactory(
        node=coordinator,
        kind="superlink",
        status="running",
        started_at=started,
        pid=4242,
        runtime_config={"insecure": True},
    )
    run = FederatedRunFactory(
        project=coordinator.project,
        status="running",
        coordinator_session=superlink,
        flower_run_id="8723456789012345678",
        pid=4343,
        started_at=started,
        log_path="/logs/run.log",
    )

    body = api_client.get(COORDINATOR).json()

    assert body["superlink_running"] is True
    assert body["superlink_started_at"] == started.isoformat()
    assert body["superlink_session_id"] == str(superlink.id)
    assert body["run_active"] is True
    assert body["run_info"] == {
        "federation_name": "production",
        "started_at": started.isoformat(),
        "pid": "4343",  # a string, as the dashboard's RunInfo has it
        "log_path": "/logs/run.log",
        "run_id": str(run.id),
        "flower_run_id": "8723456789012345678",
        "status": "running",
        "project_id": str(run.project_id),
        "coordinator_node_id": body["active_coordinator_node_id"],
        "user_id": None,
    }


@pytest.mark.django_db
def test_coordinator_health_does_not_call_a_starting_superlink_running(api_client):
    NodeSessionFactory(node=accounts_services.coordinator_node_ensure(), kind="superlink", status="starting")

    body = api_client.get(COORDINATOR).json()

    assert body["superlink_running"] is False
    assert body["superlink_status"] == "starting"


@pytest.mark.django_db
def test_coordinator_health_ignores_ended_sessions_and_runs(api_client):
    coordinator = accounts_services.coordinator_node_ensure()
    ended = NodeSessionFactory(node=coordinator, kind="superlink", status="exited")
    FederatedRunFactory(project=coordinator.project, status="completed", coordinator_session=ended)

    body = api_client.get(COORDINATOR).json()

    assert body["superlink_running"] is False
    assert body["run_active"] is False
    assert body["run_info"] is None


@pytest.mark.django_db
def test_coordinator_health_reports_a_fresh_heartbeat_as_supervisor_alive(api_client):
    SupervisorHeartbeatFactory()

    body = api_client.get(COORDINATOR).json()

    assert body["supervisor_alive"] is True
    assert body["supervisor_hint"] is None


@pytest.mark.django_db
def test_coordinator_health_reports_stale_or_stopped_supervisors_as_not_alive(api_client, settings):
    SupervisorHeartbeatFactory(beat_at=timezone.now() - timedelta(seconds=settings.SUPERVISOR_STALE_SECONDS + 1))
    SupervisorHeartbeatFactory(stopped_at=timezone.now())

    body = api_client.get(COORDINATOR).json()

    assert body["supervisor_alive"] is False


# ---------------------------------------------------------------- participant
@pytest.mark.django_db
def test_participant_health_with_no_supernode_reports_nothing_running(api_client):
    response = api_client.get(PARTICIPANT)

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= PARTICIPANT_FIELDS
    assert body["supernode_running"] is False
    assert body["started_at"] is None
    assert body["log_path"] is None
    assert body["session_id"] is None
    participant = Node.objects.get(external_id="participant")
    assert participant.role == "participant"
    assert body["node_id"] == str(participant.id)
    assert body["project_id"] == str(participant.project_id)


@pytest.mark.django_db
def test_participant_health_creates_the_configured_project_and_node_once(api_client, settings):
    api_client.get(PARTICIPANT)
    api_client.get(PARTICIPANT)
    api_client.get(COORDINATOR)

    assert Project.objects.filter(slug=settings.PROJECT_SLUG).count() == 1
    assert Node.objects.filter(external_id=settings.PARTICIPANT_NODE_ID).count() == 1
    assert Node.objects.filter(external_id=settings.COORDINATOR_NODE_ID).count() == 1
    # Coordinator and participant of one site share the configured project.
    assert set(Node.objects.values_list("project__slug", flat=True)) == {settings.PROJECT_SLUG}


@pytest.mark.django_db
def test_participant_health_reports_the_running_supernode(api_client):
    node = accounts_services.participant_node_ensure()
    started = timezone.now() - timedelta(seconds=30)
    session = NodeSessionFactory(
        node=node, kind="supernode", status="running", started_at=started, log_path="/logs/supernode-p0.log"
    )

    body = api_client.get(PARTICIPANT).json()

    assert body["supernode_running"] is True
    assert body["session_id"] == str(session.id)
    assert body["started_at"] == started.isoformat()
    assert body["log_path"] == "/logs/supernode-p0.log"
    assert [s["session_id"] for s in body["supernodes"]] == [str(session.id)]


@pytest.mark.django_db
def test_participant_health_after_the_supernode_ended_reports_the_latest_session_not_running(api_client):
    node = accounts_services.participant_node_ensure()
    session = NodeSessionFactory(node=node, kind="supernode", status="exited", log_path="/logs/old.log")

    body = api_client.get(PARTICIPANT).json()

    assert body["supernode_running"] is False
    assert body["session_id"] == str(session.id)
    assert body["log_path"] == "/logs/old.log"
    assert body["supernodes"] == []


# ---------------------------------------------------------------- the HTTP stack itself
@pytest.mark.django_db
def test_health_through_the_middleware_stack_does_not_warn_with_the_configured_static_root():
    # No STATIC_ROOT override: a fresh checkout has never run collectstatic, and WhiteNoise
    # warns "No directory at: .../static/" on every worker start (an error under pytest).
    response = staff_api_client().get(COORDINATOR)

    assert response.status_code == 200
