"""Admin pages start and stop Flower processes through the same services as the API."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orchestration.models import FederatedRun, NodeSession
from tests.factories import SupervisorHeartbeatFactory
from tests.stack import Stack


@pytest.fixture
def admin_client(db: None) -> Client:
    user = get_user_model().objects.create_superuser(username="root", password="pw-123456-xyz", email="r@example.org")
    client = Client()
    client.force_login(user)
    return client


def _messages(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


def test_changelists_offer_start_and_stop_controls(admin_client: Client) -> None:
    page = admin_client.get("/admin/orchestration/nodesession/").content.decode()
    assert 'href="start-superlink/"' in page and 'href="start-supernode/"' in page and 'href="stop-superlink/"' in page
    page = admin_client.get("/admin/orchestration/federatedrun/").content.decode()
    assert 'href="start-run/"' in page and 'href="stop-run/"' in page


def test_start_superlink_without_supervisor_says_how_to_start_one_and_writes_nothing(admin_client: Client) -> None:
    response = admin_client.post("/admin/orchestration/nodesession/start-superlink/", {"insecure": "on"}, follow=True)
    assert response.status_code == 200
    assert any("python manage.py runsupervisor" in m for m in _messages(response))
    assert not NodeSession.objects.exists()


@pytest.mark.parametrize(
    ("url", "data", "field"),
    [
        (
            "/admin/orchestration/nodesession/start-superlink/",
            {"insecure": "on", "listen_address": "nowhere"},
            "listen_address",
        ),
        (
            "/admin/orchestration/nodesession/start-superlink/",
            {"insecure": "on", "extra_args": "--database /etc/passwd"},
            "extra_args",
        ),
        (
            "/admin/orchestration/nodesession/start-superlink/",
            {"insecure": "on", "listen_address": "0.0.0.0:9191"},
            "listen_address",
        ),
        (
            "/admin/orchestration/nodesession/start-supernode/",
            {"partition_id": 3, "num_partitions": 2, "insecure": "on"},
            "partition_id",
        ),
        (
            "/admin/orchestration/nodesession/start-supernode/",
            {"partition_id": 0, "num_partitions": 1, "insecure": "on", "clientappio_api_address": "127.0.0.1:22"},
            "clientappio_api_address",
        ),
        ("/admin/orchestration/federatedrun/start-run/", {"federation_name": "bad name!"}, "federation_name"),
    ],
)
def test_bad_admin_input_is_refused_naming_the_field_and_changes_nothing(
    admin_client: Client, url: str, data: dict, field: str
) -> None:
    SupervisorHeartbeatFactory()
    response = admin_client.post(url, data, follow=True)
    assert response.status_code == 200
    assert any(field in m for m in _messages(response)), _messages(response)
    assert not NodeSession.objects.exists() and not FederatedRun.objects.exists()


def test_staff_without_change_permission_cannot_use_controls(db: None) -> None:
    user = get_user_model().objects.create_user(username="viewer", password="pw-123456-xyz", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.post("/admin/orchestration/nodesession/start-superlink/", {"insecure": "on"}).status_code == 403


@pytest.mark.federation
@pytest.mark.django_db(transaction=True)
def test_admin_starts_and_stops_a_real_superlink(stack: Stack, settings: Any) -> None:
    # The admin runs in this process: its port policy is the stack's (the default SuperLink's port).
    settings.SUPERLINK_ADDRESS = stack.env["FEDML_SUPERLINK_ADDRESS"]
    user = get_user_model().objects.create_superuser(username="root", password="pw-123456-xyz", email="r@example.org")
    client = Client()
    client.force_login(user)
    response = client.post(
        "/admin/orchestration/nodesession/start-superlink/",
        {"insecure": "on", "listen_address": f"127.0.0.1:{stack.superlink_port}"},
        follow=True,
    )
    assert any(m.startswith("SuperLink running (pid ") for m in _messages(response)), _messages(response)
    session = NodeSession.objects.get(kind="superlink")
    assert session.status == "running" and session.pid
    response = client.post("/admin/orchestration/nodesession/stop-superlink/", {}, follow=True)
    assert any("Stop requested" in m for m in _messages(response))
    from tests.stack import wait_until

    wait_until(lambda: NodeSession.objects.get(pk=session.pk).status == "stopped", timeout=30, message="stopped")


def test_session_and_run_change_pages_carry_the_live_panels(admin_client: Client) -> None:
    from tests.factories import FederatedRunFactory, NodeSessionFactory

    session = NodeSessionFactory(status="running")
    page = admin_client.get(f"/admin/orchestration/nodesession/{session.pk}/change/").content.decode()
    assert f'data-ws-path="/ws/sessions/{session.pk}/logs/"' in page and "orchestration/logpanel.js" in page
    run = FederatedRunFactory(status="running")
    page = admin_client.get(f"/admin/orchestration/federatedrun/{run.pk}/change/").content.decode()
    assert f'data-ws-path="/ws/runs/{run.pk}/logs/"' in page and "data-fedml-metrics" in page
