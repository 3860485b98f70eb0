"""POST /api/coordinator/superlink/start and /superlink/stop: input checks, supervisor checks, conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts import services as accounts_services
from orchestration.models import NodeSession
from tests.factories import NodeFactory, NodeSessionFactory, SupervisorHeartbeatFactory

START = "/api/coordinator/superlink/start"
STOP = "/api/coordinator/superlink/stop"


@pytest.fixture
def certs_dir(settings, tmp_path: Path) -> Path:
    root = tmp_path / "certificates"
    server = root / "server"
    server.mkdir(parents=True)
    for name in ("ca.crt", "server.pem", "server.key"):
        (server / name).write_text(f"-- {name} --\n")
    settings.CERTIFICATES_DIR = root
    return root


def _post(api_client: APIClient, body: object) -> tuple[int, dict]:
    response = api_client.post(START, body, format="json")
    return response.status_code, response.json()


# ---------------------------------------------------------------- bad input: 400, nothing written
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"insecure": "yes"}, "insecure"),
        ({"insecure": 1}, "insecure"),
        ({"insecure": "false"}, "insecure"),
        ({"listen_address": "9191"}, "listen_address"),
        ({"listen_address": "127.0.0.1:99999"}, "listen_address"),
        ({"listen_address": "127.0.0.1:9191; rm -rf /"}, "listen_address"),
        ({"listen_address": 9191}, "listen_address"),
        ({"extra_args": ["--database", "/etc/passwd"]}, "extra_args"),
        ({"extra_args": ["--database=/etc/passwd"]}, "extra_args"),
        ({"extra_args": ["--isolation", "process;id"]}, "extra_args"),
        ({"extra_args": "--isolation process"}, "extra_args"),
        ({"extra_args": ["--enable-supernode-auth"] * 33}, "extra_args"),
        ({"insecure": True, "certificates_path": "server"}, "certificates_path"),
        ({"insecure": False}, "certificates_path"),
        ({"restart_policy": "on_failure"}, "restart_policy"),
        ({"restart_policy": 1}, "restart_policy"),
    ],
)
def test_superlink_start_refuses_bad_input_naming_the_field_and_writes_nothing(
    api_client, alive, certs_dir, body, field
):
    status, payload = _post(api_client, body)

    assert status == 400
    assert payload["field"] == field
    assert payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["../outside", "/etc", "server/../../outside", "link-out"])
def test_superlink_start_refuses_certificates_path_outside_the_certificates_dir(api_client, alive, certs_dir, path):
    outside = certs_dir.parent / "outside"
    outside.mkdir()
    for name in ("ca.crt", "server.pem", "server.key"):
        (outside / name).write_text("x\n")
    (certs_dir / "link-out").symlink_to(outside, target_is_directory=True)

    status, payload = _post(api_client, {"insecure": False, "certificates_path": path})

    assert status == 400
    assert payload["field"] == "certificates_path"
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_refuses_a_certificates_dir_missing_a_file(api_client, alive, certs_dir):
    (certs_dir / "server" / "server.key").unlink()

    status, payload = _post(api_client, {"insecure": False, "certificates_path": "server"})

    assert status == 400
    assert payload["field"] == "certificates_path"
    assert "server.key" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("body", [[], ["insecure"], "insecure", 3])
def test_superlink_start_refuses_a_body_that_is_not_an_object(api_client, alive, body):
    status, payload = _post(api_client, body)

    assert status == 400
    assert payload["field"] == "body"
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_refuses_a_json_null_body(api_client, alive):
    response = api_client.post(START, "null", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_refuses_malformed_json(api_client, alive):
    response = api_client.post(START, '{"insecure": tru', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert NodeSession.objects.count() == 0


# ---------------------------------------------------------------- supervisor: 503, nothing written
@pytest.mark.django_db
def test_superlink_start_without_a_supervisor_answers_503_with_the_command_to_run(api_client):
    status, payload = _post(api_client, {"insecure": True})

    assert status == 503
    assert "python manage.py runsupervisor" in payload["detail"]
    assert payload["hint"] == "python manage.py runsupervisor"
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_with_a_stale_heartbeat_answers_503(api_client, settings):
    from datetime import timedelta

    from django.utils import timezone

    SupervisorHeartbeatFactory(beat_at=timezone.now() - timedelta(seconds=settings.SUPERVISOR_STALE_SECONDS + 5))

    status, payload = _post(api_client, {})

    assert status == 503
    assert "python manage.py runsupervisor" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_valid_request_that_no_supervisor_picks_up_answers_503_and_withdraws_the_row(api_client, alive):
    status, payload = _post(
        api_client, {"insecure": True, "listen_address": "127.0.0.1:9255", "extra_args": ["--isolation=subprocess"]}
    )

    assert status == 503
    assert "0.5s" in payload["detail"]
    assert "python manage.py runsupervisor" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_with_valid_certificates_waits_then_answers_503_and_leaves_no_row(api_client, alive, certs_dir):
    status, _ = _post(api_client, {"insecure": False, "certificates_path": "server"})

    assert status == 503
    assert NodeSession.objects.count() == 0


# ---------------------------------------------------------------- conflicts: 409
@pytest.mark.django_db
def test_superlink_start_while_a_superlink_is_running_answers_409_naming_it(api_client, alive):
    coordinator = accounts_services.coordinator_node_ensure()
    running = NodeSessionFactory(node=coordinator, kind="superlink", status="running")

    status, payload = _post(api_client, {})

    assert status == 409
    assert payload["session_id"] == str(running.id)
    assert list(NodeSession.objects.values_list("id", flat=True)) == [running.id]


@pytest.mark.django_db
def test_superlink_start_on_a_port_used_by_a_running_supernode_answers_409(api_client, alive):
    participant = NodeFactory(project=accounts_services.coordinator_node_ensure().project, role="participant")
    NodeSessionFactory(
        node=participant, kind="supernode", status="running", runtime_config={"host": "127.0.0.1", "port": 9256}
    )

    status, payload = _post(api_client, {"listen_address": "127.0.0.1:9256"})

    assert status == 409
    assert payload["field"] == "listen_address"
    assert NodeSession.objects.filter(kind="superlink").count() == 0


@pytest.mark.django_db
def test_superlink_stop_with_nothing_running_answers_409(api_client):
    response = api_client.post(STOP, {}, format="json")

    assert response.status_code == 409
    assert "no SuperLink" in response.json()["detail"]


@pytest.mark.django_db
def test_superlink_stop_with_an_unclaimed_request_withdraws_it(api_client):
    coordinator = accounts_services.coordinator_node_ensure()
    requested = NodeSessionFactory(node=coordinator, kind="superlink", status="requested")

    response = api_client.post(STOP, {}, format="json")

    assert response.status_code == 200
    assert response.json() == {"status": "stopped", "session_id": str(requested.id), "pid": None}
    requested.refresh_from_db()
    assert requested.status == "stopped"
    assert requested.ended_at is not None


def test_superlink_start_whose_binary_cannot_be_started_answers_502_with_the_cause(
    api_client, supervisor_in_thread, flower_missing
):

    status, payload = _post(api_client, {})

    assert status == 502, payload
    assert payload["status"] == "failed"
    assert "flower-superlink" in payload["detail"]
    session = NodeSession.objects.get(pk=payload["session_id"])
    assert session.status == "failed" and session.ended_at is not None


# ---------------------------------------------------------------- the port policy
@pytest.fixture
def port_settings(settings) -> None:
    """The default policy, whatever the environment says: loopback hosts, the default project's
    SuperLink on 9191, the others' in 9200-9299, SuperNodes in 9400-9699."""
    settings.SUPERLINK_BIND_HOSTS = ("127.0.0.1", "::1", "localhost")
    settings.SUPERLINK_ADDRESS = "127.0.0.1:9191"
    settings.SUPERLINK_PORT_RANGE = (9200, 9299)
    settings.SUPERNODE_PORT_RANGE = (9400, 9699)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("0.0.0.0:9191", "wildcard"),
        ("[::]:9250", "wildcard"),
        ("192.0.2.1:9250", "may listen on"),
        ("127.0.0.1:22", "privileged"),
        ("127.0.0.1:9400", "outside"),  # a SuperNode's
        ("127.0.0.1:9555", "outside"),
    ],
)
def test_superlink_start_refuses_a_listen_address_outside_the_port_policy_naming_the_field(
    api_client, alive, port_settings, address, says
):
    status, payload = _post(api_client, {"listen_address": address})

    assert status == 400, payload
    assert payload["field"] == "listen_address"
    assert says in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_another_projects_superlink_may_not_take_the_default_superlinks_port(api_client, alive, port_settings):
    coordinator = NodeFactory(role="coordinator")

    status, payload = _post(
        api_client,
        {"project_id": str(coordinator.project_id), "node_id": str(coordinator.pk), "listen_address": "localhost:9191"},
    )

    assert status == 400, payload
    assert payload["field"] == "listen_address"
    assert "reserved" in payload["detail"] and "FEDML_SUPERLINK_ADDRESS" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_superlink_start_refuses_a_health_server_on_a_wildcard(api_client, alive, port_settings):
    status, payload = _post(api_client, {"extra_args": ["--health-server-address", "0.0.0.0:9290"]})

    assert status == 400, payload
    assert payload["field"] == "extra_args"
    assert "wildcard" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_a_wildcard_superlink_address_needs_the_bind_hosts_setting(api_client, alive, port_settings, settings):
    settings.SUPERLINK_ADDRESS = "0.0.0.0:9191"

    refused_status, refused = _post(api_client, {})
    settings.SUPERLINK_BIND_HOSTS = ("0.0.0.0",)
    accepted_status, accepted = _post(api_client, {})

    assert refused_status == 400 and refused["field"] == "listen_address"
    assert "FEDML_SUPERLINK_BIND_HOSTS" in refused["detail"] and "FEDML_SUPERLINK_ADDRESS" in refused["detail"]
    assert accepted_status == 503, accepted  # allowed now; no supervisor runs here
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(("held", "asked"), [("localhost", "127.0.0.1"), ("127.0.0.1", "[::ffff:127.0.0.1]")])
def test_superlink_start_on_a_port_another_projects_session_holds_under_another_spelling_answers_409(
    api_client, alive, port_settings, held, asked
):
    NodeSessionFactory(
        node=NodeFactory(role="coordinator"),
        kind="superlink",
        status="running",
        runtime_config={"host": held, "port": 9256},
    )

    status, payload = _post(api_client, {"listen_address": f"{asked}:9256"})

    assert status == 409, payload
    assert payload["field"] == "listen_address"
    assert NodeSession.objects.count() == 1


@pytest.mark.django_db
def test_another_projects_superlink_takes_the_first_range_port_no_listener_holds_under_any_spelling(
    alive, port_settings, settings
):
    from orchestration.services import superlink_request_start

    settings.SUPERLINK_ADDRESS = "127.0.0.1:9200"  # inside the range: kept for the default project
    NodeSessionFactory(
        node=NodeFactory(role="participant"), status="running", runtime_config={"host": "localhost", "port": 9201}
    )
    NodeSessionFactory(
        node=NodeFactory(role="coordinator"),
        kind="superlink",
        status="running",
        runtime_config={"host": "127.0.0.1", "port": 9210, "extra_args": ["--health-server-address", "[::]:9202"]},
    )

    session = superlink_request_start(node=NodeFactory(role="coordinator"))

    assert (session.runtime_config["host"], session.runtime_config["port"]) == ("127.0.0.1", 9203)
