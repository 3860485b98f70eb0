"""POST /api/participant/supernode/start and the SuperNode stop endpoints."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts import services as accounts_services
from core.errors import InvalidInput
from orchestration.models import NodeSession
from tests.factories import NodeFactory, NodeSessionFactory, SupervisorHeartbeatFactory
from tests.stack import free_port, free_ports

START = "/api/participant/supernode/start"
STOP = "/api/participant/supernode/stop"


@pytest.fixture
def certs_dir(settings, tmp_path: Path) -> Path:
    root = tmp_path / "certificates"
    (root / "ca").mkdir(parents=True)
    (root / "ca" / "ca.crt").write_text("-- ca --\n")
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
        ({"partition": 1}, "partition"),
        ({"partition_id": "1"}, "partition_id"),
        ({"partition_id": 1.0}, "partition_id"),
        ({"partition_id": True}, "partition_id"),
        ({"partition_id": -1}, "partition_id"),
        ({"num_partitions": "2"}, "num_partitions"),
        ({"num_partitions": 0}, "num_partitions"),
        ({"partition_id": 2, "num_partitions": 2}, "partition_id"),
        ({"partition_id": 5}, "partition_id"),
        ({"insecure": "yes"}, "insecure"),
        ({"superlink_address": "127.0.0.1"}, "superlink_address"),
        ({"superlink_address": "grpc://127.0.0.1:9092"}, "superlink_address"),
        ({"superlink_address": "127.0.0.1:0"}, "superlink_address"),
        ({"clientappio_api_address": "9094"}, "clientappio_api_address"),
        ({"clientappio_api_address": "127.0.0.1:9094 --insecure"}, "clientappio_api_address"),
        ({"extra_args": ["--database", "/etc/passwd"]}, "extra_args"),
        ({"extra_args": ["--clientappio-api-address", "0.0.0.0:9094"]}, "extra_args"),
        ({"extra_args": ["--enable-supernode-auth"]}, "extra_args"),
        ({"extra_args": ["--max-retries", "3; reboot"]}, "extra_args"),
        ({"extra_args": ["--max-wait-time=$(id)"]}, "extra_args"),
        ({"insecure": True, "certificates_path": "ca"}, "certificates_path"),
        ({"insecure": False}, "certificates_path"),
        ({"restart_policy": "sometimes"}, "restart_policy"),
        ({"restart_policy": True}, "restart_policy"),
        ({"restart_policy": ["always"]}, "restart_policy"),
    ],
)
def test_supernode_start_refuses_bad_input_naming_the_field_and_writes_nothing(
    api_client, alive, certs_dir, body, field
):
    status, payload = _post(api_client, body)

    assert status == 400
    assert payload["field"] == field
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["../outside/ca.crt", "/etc/ssl", "ca/../../outside", "link-out"])
def test_supernode_start_refuses_certificates_path_outside_the_certificates_dir(api_client, alive, certs_dir, path):
    outside = certs_dir.parent / "outside"
    outside.mkdir()
    (outside / "ca.crt").write_text("x\n")
    (certs_dir / "link-out").symlink_to(outside / "ca.crt")

    status, payload = _post(api_client, {"insecure": False, "certificates_path": path})

    assert status == 400
    assert payload["field"] == "certificates_path"
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("body", [[], [{"partition_id": 0}], "partition_id=0", 7])
def test_supernode_start_refuses_a_body_that_is_not_an_object(api_client, alive, body):
    status, payload = _post(api_client, body)

    assert status == 400
    assert payload["field"] == "body"
    assert NodeSession.objects.count() == 0


# ---------------------------------------------------------------- supervisor: 503, nothing written
@pytest.mark.django_db
def test_supernode_start_without_a_supervisor_answers_503_with_the_command_to_run(api_client):
    status, payload = _post(api_client, {"partition_id": 0, "num_partitions": 2})

    assert status == 503
    assert "python manage.py runsupervisor" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_supernode_start_valid_request_that_no_supervisor_picks_up_answers_503_and_withdraws_the_row(api_client, alive):
    body = {
        "superlink_address": "127.0.0.1:9092",
        "partition_id": 1,
        "num_partitions": 2,
        "clientappio_api_address": "127.0.0.1:9494",
        "extra_args": ["--max-retries", "3", "--isolation=subprocess"],
    }

    status, payload = _post(api_client, body)

    assert status == 503
    assert "python manage.py runsupervisor" in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
def test_supernode_start_with_a_root_certificate_waits_then_answers_503_and_leaves_no_row(api_client, alive, certs_dir):
    status, _ = _post(api_client, {"insecure": False, "certificates_path": "ca"})

    assert status == 503
    assert NodeSession.objects.count() == 0


# ---------------------------------------------------------------- the recorded intent (service)
@pytest.mark.django_db
def test_supernode_request_start_records_host_port_and_node_config_for_the_supervisor(alive):
    from participants.services import supernode_request_start

    node = accounts_services.participant_node_ensure()

    session = supernode_request_start(
        node=node, partition_id=1, num_partitions=3, clientappio_api_address="127.0.0.1:9494"
    )

    assert session.status == "requested"
    assert session.runtime_config["host"] == "127.0.0.1"
    assert session.runtime_config["port"] == 9494
    assert session.runtime_config["node_config"] == {"partition-id": 1, "num-partitions": 3}
    assert session.runtime_config["restart_policy"] == "never"  # the default


@pytest.mark.django_db
def test_supernode_request_start_records_its_restart_policy_and_refuses_an_unknown_one(alive):
    from participants.services import supernode_request_start

    node = accounts_services.participant_node_ensure()
    session = supernode_request_start(node=node, restart_policy="on-failure")
    assert session.runtime_config["restart_policy"] == "on-failure"
    with pytest.raises(InvalidInput) as refused:
        supernode_request_start(node=node, restart_policy="sometimes")
    assert refused.value.field == "restart_policy"
    assert NodeSession.objects.count() == 1


@pytest.mark.django_db
def test_supernode_request_start_picks_a_free_port_skipping_used_ones(alive, settings):
    from participants.services import supernode_request_start

    base = free_ports(2)
    settings.SUPERNODE_PORT_RANGE = (base, base + 1)
    node = accounts_services.participant_node_ensure()
    NodeSessionFactory(
        node=node, kind="supernode", status="running", runtime_config={"host": "127.0.0.1", "port": base}
    )

    session = supernode_request_start(node=node)

    assert session.runtime_config["port"] == base + 1


@pytest.mark.django_db
def test_supernode_request_start_skips_a_port_another_program_holds(alive, settings):
    """An outgoing connection or another program's listener on the next port would make
    flower-supernode fail to bind ("address already in use"); the choice skips it."""
    from participants.services import supernode_request_start

    base = free_ports(2)
    settings.SUPERNODE_PORT_RANGE = (base, base + 1)
    with socket.create_server(("127.0.0.1", base)):
        session = supernode_request_start(node=accounts_services.participant_node_ensure())

    assert session.runtime_config["port"] == base + 1


# ---------------------------------------------------------------- conflicts: 409
@pytest.mark.django_db
def test_supernode_start_on_a_clientappio_port_already_in_use_answers_409(api_client, alive):
    node = accounts_services.participant_node_ensure()
    NodeSessionFactory(
        node=node, kind="supernode", status="running", runtime_config={"host": "127.0.0.1", "port": 9494}
    )

    status, payload = _post(api_client, {"clientappio_api_address": "127.0.0.1:9494"})

    assert status == 409
    assert payload["field"] == "clientappio_api_address"
    assert NodeSession.objects.count() == 1


@pytest.mark.django_db
def test_supernode_stop_with_nothing_running_answers_409(api_client):
    response = api_client.post(STOP, {}, format="json")

    assert response.status_code == 409
    assert "no SuperNode" in response.json()["detail"]


@pytest.mark.django_db
def test_supernode_stop_with_an_unknown_session_id_answers_409_naming_the_field(api_client):
    node = accounts_services.participant_node_ensure()
    NodeSessionFactory(node=node, kind="supernode", status="running")

    response = api_client.post(STOP, {"session_id": "00000000-0000-0000-0000-000000000000"}, format="json")

    assert response.status_code == 409
    assert response.json()["field"] == "session_id"


def test_supernode_start_whose_binary_cannot_be_started_answers_502_with_the_cause(
    api_client, supervisor_in_thread, flower_missing
):

    status, payload = _post(api_client, {"superlink_address": "127.0.0.1:9092", "partition_id": 0})

    assert status == 502, payload
    assert payload["status"] == "failed"
    assert "flower-supernode" in payload["detail"]
    session = NodeSession.objects.get(pk=payload["session_id"])
    assert session.status == "failed" and session.ended_at is not None


# ---------------------------------------------------------------- the port policy
@pytest.fixture
def port_settings(settings) -> None:
    """The default policy, whatever the environment says: loopback hosts, SuperNodes in 9400-9699,
    SuperLinks on 9191 (the default project's) and 9200-9299."""
    settings.SUPERNODE_BIND_HOSTS = ("127.0.0.1", "::1", "localhost")
    settings.SUPERNODE_PORT_RANGE = (9400, 9699)
    settings.SUPERLINK_ADDRESS = "127.0.0.1:9191"
    settings.SUPERLINK_PORT_RANGE = (9200, 9299)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("0.0.0.0:9400", "wildcard"),
        ("[::]:9400", "wildcard"),
        ("0:9400", "may listen on"),  # 0 is 0.0.0.0 to the kernel
        ("10.1.2.3:9400", "may listen on"),
        ("127.0.0.1:22", "privileged"),
        ("127.0.0.1:9191", "reserved"),  # FEDML_SUPERLINK_ADDRESS: the default project's SuperLink
        ("localhost:9250", "reserved"),  # FEDML_SUPERLINK_PORT_RANGE: the projects' SuperLinks
        ("127.0.0.1:9094", "outside"),  # Flower's default, outside FEDML_SUPERNODE_PORT_RANGE
        ("127.0.0.1:8000", "outside"),  # Daphne's
    ],
)
def test_supernode_start_refuses_a_runtime_address_outside_the_port_policy_naming_the_field(
    api_client, alive, port_settings, address, says
):
    status, payload = _post(api_client, {"clientappio_api_address": address})

    assert status == 400, payload
    assert payload["field"] == "clientappio_api_address"
    assert says in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "says"),
    [("0.0.0.0:9450", "wildcard"), ("127.0.0.1:9200", "reserved"), ("127.0.0.1:9099", "outside")],
)
def test_supernode_start_refuses_a_health_server_address_outside_the_port_policy(
    api_client, alive, port_settings, address, says
):
    status, payload = _post(api_client, {"extra_args": ["--health-server-address", address]})

    assert status == 400, payload
    assert payload["field"] == "extra_args"
    assert says in payload["detail"]
    assert NodeSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("held", "asked"),
    [
        ("127.0.0.1", "localhost"),
        ("localhost", "127.0.0.1"),
        ("[::1]", "localhost"),
        ("0.0.0.0", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ],
)
def test_supernode_start_on_a_port_another_projects_live_session_holds_under_another_spelling_answers_409(
    api_client, alive, port_settings, held, asked
):
    other_site = NodeFactory(role="participant")  # a site of another project
    NodeSessionFactory(node=other_site, kind="supernode", status="running", runtime_config={"host": held, "port": 9494})

    status, payload = _post(api_client, {"clientappio_api_address": f"{asked}:9494"})

    assert status == 409, payload
    assert payload["field"] == "clientappio_api_address"
    assert NodeSession.objects.count() == 1


@pytest.mark.django_db
def test_supernode_start_on_the_health_server_port_of_a_live_superlink_answers_409(api_client, alive, port_settings):
    coordinator = NodeFactory(role="coordinator")
    NodeSessionFactory(
        node=coordinator,
        kind="superlink",
        status="running",
        runtime_config={"host": "127.0.0.1", "port": 9201, "extra_args": ["--health-server-address", "[::1]:9460"]},
    )

    status, payload = _post(api_client, {"clientappio_api_address": "localhost:9460"})

    assert status == 409, payload
    assert payload["field"] == "clientappio_api_address"
    assert NodeSession.objects.count() == 1


def test_supernode_start_accepts_an_address_the_policy_allows_and_the_supernode_listens_there(
    api_client, supervisor_in_thread, settings
):
    first = free_ports(1)
    settings.SUPERNODE_PORT_RANGE = (first, first)

    status, payload = _post(
        api_client,
        {"clientappio_api_address": f"localhost:{first}", "superlink_address": f"127.0.0.1:{free_port()}"},
    )

    assert status == 201, payload
    assert payload["clientappio_api_address"] == f"localhost:{first}"
    argv = supervisor_in_thread.live_children()[0].argv
    assert argv[argv.index("--host") + 1 : argv.index("--port") + 2] == ["localhost", "--port", str(first)]


def test_supernode_start_without_an_address_takes_the_first_port_of_the_range_no_live_listener_holds(
    api_client, supervisor_in_thread, settings
):
    first = free_ports(2)
    settings.SUPERNODE_PORT_RANGE = (first, first + 1)
    other_site = NodeFactory(role="participant")  # another project's SuperNode, live on another supervisor
    NodeSessionFactory(
        node=other_site,
        kind="supernode",
        status="running",
        supervisor_id=SupervisorHeartbeatFactory().id,
        runtime_config={"host": "localhost", "port": first},
    )

    status, payload = _post(api_client, {"superlink_address": f"127.0.0.1:{free_port()}"})

    assert status == 201, payload
    assert payload["clientappio_api_address"] == f"127.0.0.1:{first + 1}"
