"""The APIs never show the server's absolute paths: error details, log paths, runtime configs and
log lines name FedML's directories by their setting ($FEDML_LOG_DIR/...); the rows keep the real
paths for the staff admin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as accounts_services
from accounts.services import membership_set
from orchestration.models import LogLine, NodeSession
from orchestration.supervisor import Command
from tests.factories import FederatedRunFactory, NodeSessionFactory, UserFactory
from tests.fake_launcher import FakeChildLauncher
from tests.supervisor_kit import MakeSupervisor, drive, request_fake, session_ended, started_supervisors, use_own_dirs


@pytest.fixture
def dirs(settings, tmp_path: Path) -> Path:
    use_own_dirs(settings, tmp_path)
    settings.FLOWER_BIN_DIR = tmp_path / "venv" / "bin"  # holds no flower-supernode
    return tmp_path


@pytest.fixture
def make_supervisor(dirs: Path) -> Iterator[MakeSupervisor]:
    yield from started_supervisors()


def participant_client() -> APIClient:
    site = accounts_services.participant_node_ensure()
    user = UserFactory()
    membership_set(user=user, project=site.project, role="participant", node=site, actor="t", via="t")
    client = APIClient()
    client.force_authenticate(user)
    return client


class MissingProgramLauncher(FakeChildLauncher):
    """Sessions start a flower-supernode that is not installed, as on a site with a broken venv."""

    def session_command(self, session: NodeSession) -> Command:
        from django.conf import settings

        return Command([str(settings.FLOWER_BIN_DIR / "flower-supernode")], settings.FLWR_HOME_ROOT / "s")


@pytest.mark.django_db(transaction=True)
def test_a_failed_start_tells_the_participant_what_is_missing_without_the_servers_path(
    make_supervisor, dirs: Path
) -> None:
    sup = make_supervisor(MissingProgramLauncher())
    ended = drive(sup, session_ended(request_fake()), message="the start fails")
    assert str(dirs) in ended.status_detail  # the row keeps the real path, for the operator
    body = participant_client().get(f"/api/participant/supernodes/{ended.pk}").json()
    assert "No such file or directory: '$FEDML_FLOWER_BIN_DIR/flower-supernode'" in body["status_detail"]
    assert str(dirs) not in json.dumps(body)


@pytest.mark.django_db
def test_log_paths_runtime_configs_and_log_lines_name_directories_by_their_setting(dirs: Path, settings: Any) -> None:
    client = participant_client()
    key = settings.DATA_DIR / "keys" / "k" / "supernode_key"
    session = NodeSessionFactory(
        node=accounts_services.participant_node_ensure(),
        kind="supernode",
        status="running",
        log_path=str(settings.LOG_DIR / "supernode-p0-1234.log"),
        runtime_config={
            "superlink_address": "127.0.0.1:9092",
            "root_certificates": str(settings.CERTIFICATES_DIR / "superlink" / "ca.crt"),
            "auth_private_key": str(key),
        },
    )
    LogLine.objects.create(
        session=session,
        seq=1,
        stream="system",
        source="supernode",
        ts=timezone.now(),
        text=f"[fedml] started pid 7: {settings.FLOWER_BIN_DIR / 'flower-supernode'} --auth-supernode-private-key {key}",
    )
    listed = client.get("/api/participant/supernodes").json()["supernodes"][0]
    assert listed["log_path"] == "$FEDML_LOG_DIR/supernode-p0-1234.log"
    assert listed["runtime_config"]["root_certificates"] == "$FEDML_CERTIFICATES_DIR/superlink/ca.crt"
    assert listed["runtime_config"]["auth_private_key"] == "$FEDML_DATA_DIR/keys/k/supernode_key"
    line = client.get(f"/api/coordinator/sessions/{session.pk}/logs").json()["lines"][0]["text"]
    assert line == (
        "[fedml] started pid 7: $FEDML_FLOWER_BIN_DIR/flower-supernode "
        "--auth-supernode-private-key $FEDML_DATA_DIR/keys/k/supernode_key"
    )
    health = client.get("/api/participant/health").json()
    assert health["log_path"] == "$FEDML_LOG_DIR/supernode-p0-1234.log"
    assert str(dirs) not in json.dumps([listed, line, health])


@pytest.mark.django_db
def test_a_certificates_path_outside_its_directory_is_refused_without_naming_the_directory(
    dirs: Path, settings: Any
) -> None:
    coordinator = accounts_services.coordinator_node_ensure()
    user = UserFactory()
    membership_set(user=user, project=coordinator.project, role="coordinator", node=coordinator, actor="t", via="t")
    client = APIClient()
    client.force_authenticate(user)
    settings.CERTIFICATES_DIR.mkdir(parents=True)
    for certificates_path in ("../../etc", "missing", "/etc"):
        response = client.post(
            "/api/coordinator/superlink/start",
            {"insecure": False, "certificates_path": certificates_path},
            format="json",
        )
        assert response.status_code == 400 and response.json()["field"] == "certificates_path"
        assert str(dirs) not in response.json()["detail"], response.json()


@pytest.mark.django_db
def test_a_runs_model_path_is_shown_relative_to_the_artifacts_directory(dirs: Path, settings: Any) -> None:
    client = participant_client()
    project = accounts_services.participant_node_ensure().project
    model = settings.ARTIFACTS_DIR / "global_model_x.pt"
    run = FederatedRunFactory(project=project, status="completed", metrics={"artifact_path": str(model)})

    detail = client.get(f"/api/coordinator/runs/{run.pk}").json()

    assert detail["metrics"]["artifact_path"] == "$FEDML_ARTIFACTS_DIR/global_model_x.pt"
    assert str(dirs) not in json.dumps(detail)
