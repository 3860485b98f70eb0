"""POST /api/coordinator/runs/start and /runs/stop: input checks, supervisor checks, conflicts."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts import services as accounts_services
from accounts.models import AuditEvent
from orchestration import services
from orchestration.models import FederatedRun, NodeSession
from tests.factories import FederatedRunFactory, NodeSessionFactory
from tests.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
START = "/api/coordinator/runs/start"
STOP = "/api/coordinator/runs/stop"


@pytest.fixture(autouse=True)
def app_dir(settings, tmp_path: Path) -> Path:
    """The run reads the app's config: a private copy, so concurrent edits don't matter."""
    target = tmp_path / "flower_app"
    target.mkdir()
    shutil.copy2(ROOT / "flower_app" / "pyproject.toml", target / "pyproject.toml")
    settings.FLOWER_APP_DIR = target
    return target


@pytest.fixture
def superlink():
    coordinator = accounts_services.coordinator_node_ensure()
    return NodeSessionFactory(
        node=coordinator,
        kind="superlink",
        status="running",
        runtime_config={"host": "127.0.0.1", "port": 9191, "address": "127.0.0.1:9191", "insecure": True},
    )


def _post(api_client: APIClient, body: object) -> tuple[int, dict]:
    response = api_client.post(START, body, format="json")
    return response.status_code, response.json()


# ---------------------------------------------------------------- bad input: 400, nothing written
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rounds": 3}, "rounds"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 0}, "stream"),
        ({"federation_name": "prod uction"}, "federation_name"),
        ({"federation_name": "../etc"}, "federation_name"),
        ({"federation_name": "--run-config"}, "federation_name"),  # would be a flag in flwr's argv
        ({"federation_name": "-x"}, "federation_name"),
        ({"federation_name": ""}, "federation_name"),
        ({"extra_args": ["--federation-config", "address='evil:1'"]}, "extra_args"),
        ({"extra_args": ["--stream"]}, "extra_args"),
        ({"extra_args": ["--run-config", 'current-run-id="x"']}, "extra_args"),
        ({"extra_args": ['--run-config=artifact-dir="/etc"']}, "extra_args"),
        ({"extra_args": ["--run-config", "num-server-rounds=$(id)"]}, "extra_args"),
        ({"extra_args": ["--run-config"]}, "extra_args"),
        ({"label": "x" * 201}, "label"),
    ],
)
def test_run_start_refuses_bad_input_naming_the_field_and_writes_nothing(api_client, alive, superlink, body, field):
    status, payload = _post(api_client, body)

    assert status == 400
    assert payload["field"] == field
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
def test_run_start_refuses_an_unknown_field_whose_name_holds_nul_and_audits_it_storably(api_client, alive, superlink):
    status, payload = _post(api_client, {"a\x00b": 1})

    assert status == 400
    assert payload["field"] == "a\x00b"
    assert FederatedRun.objects.count() == 0
    event = AuditEvent.objects.get(action="run.start")
    assert event.outcome == "error" and event.detail["field"] == "a\ufffdb"


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b'{"\\ud800": 1}', b'{"label": "x\\udfff"}', b'{"extra_args": ["\\udbff"]}'])
def test_run_start_refuses_a_body_with_a_lone_surrogate_as_not_unicode(api_client, alive, superlink, body):
    response = api_client.post(START, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"].endswith("a lone surrogate (U+D800 to U+DFFF), which is not valid Unicode")
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
def test_run_start_refuses_json_nested_deeper_than_the_cap_naming_the_body(api_client, alive, superlink, settings):
    # Python's parser raises RecursionError (a 500) near 1,000 levels; the cap answers first.
    deep = api_client.post(START, b"[" * 2000 + b"]" * 2000, content_type="application/json")
    assert deep.status_code == 400 and deep.json()["field"] == "body", deep.content
    assert deep.json()["detail"] == "body: the body is nested deeper than 32 levels"

    settings.FEDML_MAX_JSON_DEPTH = 3
    status, payload = _post(api_client, {"extra_args": [["--run-config"]]})  # 3 levels: on to the fields
    assert (status, payload["field"]) == (400, "extra_args")
    status, payload = _post(api_client, {"label": "[[[[{{{{", "extra_args": ["--run-config", 'strategy="[[[["']})
    assert status == 503, payload  # accepted (brackets inside strings do not nest); no supervisor took it
    status, payload = _post(api_client, {"extra_args": [[["--run-config"]]]})
    assert (status, payload["field"]) == (400, "body")
    assert payload["detail"] == "body: the body is nested deeper than 3 levels"
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("run_config", "reason"),
    [
        ('strategy="fed\x01avg"', "control character U+0001"),  # TOML refuses it: was a 500
        ('strategy="fed\x7favg"', "control character U+007F"),
        ('strategy="fed\x1b[2Javg"', "control character U+001B"),
        ('strategy="fed\tavg"', "control character U+0009"),  # TOML takes a tab; FedML does not
        ('strategy="fed\u0085avg"', "control character U+0085"),
        ("min-nodes=007", "is not a TOML value"),  # TOML has no leading zeros: was a 500
        ("learning-rate=1e999", "inf is not a finite number"),  # stored as Infinity, which PostgreSQL refuses
    ],
)
def test_run_start_refuses_run_config_values_flower_would_not_read_back_naming_the_key(
    api_client, alive, superlink, run_config, reason
):
    status, payload = _post(api_client, {"extra_args": ["--run-config", f"num-server-rounds=2 {run_config}"]})

    assert status == 400, payload
    assert payload["field"] == "extra_args"
    key = run_config.split("=", 1)[0]
    assert payload["detail"].startswith(f"--run-config: {key}: ") and reason in payload["detail"]
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
def test_run_start_refuses_a_run_config_key_the_app_does_not_have(api_client, alive, superlink):
    """Flower's SuperLink would refuse the run after the fact; FedML says so before anything starts."""
    status, payload = _post(api_client, {"extra_args": ["--run-config", "num-server-rounds=2 lerning-rate=0.1"]})

    assert status == 400
    assert payload["field"] == "extra_args"
    assert "'lerning-rate' is not a key of the app's [tool.flwr.app.config]" in payload["detail"]
    assert "learning-rate" in payload["detail"] and "current-run-id" not in payload["detail"]
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("rounds", ['"abc"', "2.5", "true", "1e3"])
def test_run_start_refuses_a_non_integer_num_server_rounds_override(api_client, alive, superlink, rounds):
    # The allowlist accepts any TOML scalar, but the service turns this key into an int.
    status, payload = _post(api_client, {"extra_args": ["--run-config", f"num-server-rounds={rounds}"]})

    assert status == 400
    assert payload["field"] == "extra_args"
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("body", [[], ["production"], "production", 1])
def test_run_start_refuses_a_body_that_is_not_an_object(api_client, alive, superlink, body):
    status, payload = _post(api_client, body)

    assert status == 400
    assert payload["field"] == "body"
    assert FederatedRun.objects.count() == 0


# ---------------------------------------------------------------- supervisor: 503, nothing written
@pytest.mark.django_db
def test_run_start_without_a_supervisor_answers_503_with_the_command_to_run(api_client, superlink):
    status, payload = _post(api_client, {})

    assert status == 503
    assert "python manage.py runsupervisor" in payload["detail"]
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
def test_run_start_valid_request_that_no_supervisor_picks_up_answers_503_and_withdraws_the_row(
    api_client, alive, superlink
):
    body = {
        "federation_name": "production",
        "stream": True,
        "label": "nightly",
        "extra_args": ["--run-config", "num-server-rounds=3"],
    }

    status, payload = _post(api_client, body)

    assert status == 503
    assert "0.5s" in payload["detail"]
    assert "python manage.py runsupervisor" in payload["detail"]
    assert FederatedRun.objects.count() == 0


def _superlink_row(*, supervisor_id: object, port: int) -> NodeSession:
    return NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        status="running",
        supervisor_id=supervisor_id,  # the live supervisor's own, so its start-up reconcile leaves it alone
        runtime_config={"host": "127.0.0.1", "port": port, "address": f"127.0.0.1:{port}", "insecure": True},
    )


def test_run_start_claimed_while_the_superlink_is_not_listening_answers_202_saying_so(
    api_client, supervisor_in_thread, settings
):
    """A supervisor that has the run but waits for its SuperLink is not "no supervisor": 202, not 503."""
    settings.START_WAIT_SECONDS = 1.0
    port = free_port()  # nothing listens here
    superlink = _superlink_row(supervisor_id=supervisor_in_thread.id, port=port)

    status, payload = _post(api_client, {})

    run = FederatedRun.objects.get()
    assert status == 202, payload
    assert payload["status"] == "starting"
    assert payload["pid"] is None
    assert payload["run_id"] == str(run.id)
    assert payload["session_id"] == str(superlink.id)
    assert payload["detail"] == f"waiting for the SuperLink at 127.0.0.1:{port} to accept connections"
    assert run.status == "starting" and run.supervisor_id == supervisor_in_thread.id


def test_run_start_whose_flwr_cannot_be_started_answers_502_with_the_cause(
    api_client, supervisor_in_thread, flower_missing
):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        _superlink_row(supervisor_id=supervisor_in_thread.id, port=port)

        status, payload = _post(api_client, {})

    assert status == 502, payload
    assert payload["status"] == "failed"
    assert payload["detail"].startswith("FedML could not start `flwr run`")
    run = FederatedRun.objects.get()
    assert run.status == "failed" and run.ended_at is not None


# ---------------------------------------------------------------- the recorded intent (service)
@pytest.mark.django_db
def test_run_request_start_records_app_config_with_run_config_overrides(app_dir, alive, superlink):
    project = accounts_services.project_ensure_default()

    run = services.run_request_start(
        project=project, extra_args=["--run-config", 'num-server-rounds=3 strategy="fedprox"'], label="nightly"
    )

    assert run.status == "requested"
    assert run.coordinator_session_id == superlink.id
    assert run.config["num_rounds"] == 3
    assert run.config["app_config"]["strategy"] == "fedprox"
    assert run.config["app_config"]["local-epochs"] == 2
    assert run.config["extra_args"] == ["--run-config", 'num-server-rounds=3 strategy="fedprox"']


@pytest.mark.django_db
def test_run_request_start_reads_quoted_run_config_values_with_spaces(app_dir, alive, superlink):
    run = services.run_request_start(
        project=accounts_services.project_ensure_default(),
        extra_args=['--run-config=strategy="fedprox" partitioning="dirichlet alpha"', "--run-config", "local-epochs=1"],
    )

    assert run.config["app_config"]["strategy"] == "fedprox"
    assert run.config["app_config"]["partitioning"] == "dirichlet alpha"
    assert run.config["app_config"]["local-epochs"] == 1  # typed as Flower types it


# ---------------------------------------------------------------- conflicts: 409
@pytest.mark.django_db
def test_run_start_with_no_superlink_answers_409(api_client, alive):
    status, payload = _post(api_client, {})

    assert status == 409
    assert "no SuperLink is running" in payload["detail"]
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("superlink_status", ["requested", "starting", "stopping", "exited", "failed"])
def test_run_start_with_a_superlink_that_is_not_running_answers_409(api_client, alive, superlink_status):
    NodeSessionFactory(node=accounts_services.coordinator_node_ensure(), kind="superlink", status=superlink_status)

    status, _ = _post(api_client, {})

    assert status == 409
    assert FederatedRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("run_status", ["requested", "starting", "running", "stopping"])
def test_run_start_while_a_run_is_live_answers_409_naming_it(api_client, alive, superlink, run_status):
    live = FederatedRunFactory(
        project=accounts_services.project_ensure_default(), status=run_status, coordinator_session=superlink
    )

    status, payload = _post(api_client, {})

    assert status == 409
    assert payload["run_id"] == str(live.id)
    assert list(FederatedRun.objects.values_list("id", flat=True)) == [live.id]


@pytest.mark.django_db
def test_run_stop_with_nothing_running_answers_409(api_client):
    FederatedRunFactory(project=accounts_services.project_ensure_default(), status="completed")

    response = api_client.post(STOP, {}, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == "no run is active"


@pytest.mark.django_db
def test_run_stop_of_an_unclaimed_run_withdraws_it(api_client):
    run = FederatedRunFactory(project=accounts_services.project_ensure_default(), status="requested")

    response = api_client.post(STOP, {}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "stopped"
    run.refresh_from_db()
    assert run.status == "stopped"
    assert run.stop_requested_at is None
    assert run.ended_at is not None
