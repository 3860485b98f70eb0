"""A federation over TLS: certificates from `create_certificates`, SuperLink with insecure=false,
SuperNodes and `flwr run` trusting the CA."""

from __future__ import annotations

import stat
import uuid

import pytest

from orchestration.models import FederatedRun
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def test_run_completes_over_tls_and_health_says_the_superlink_is_secure(stack: Stack) -> None:
    name = f"tls-{uuid.uuid4().hex[:8]}"  # the shared stack's certificates directory outlives this test
    out = stack.manage("create_certificates", "--name", name, "--host", "127.0.0.1").stdout
    certs = stack.tmp / "var" / "certificates" / name
    assert "certificates written" in out
    assert stat.S_IMODE((certs / "server.key").stat().st_mode) == 0o600
    assert stack.manage("create_certificates", "--name", name, check=False).returncode != 0  # no silent overwrite

    status, body = stack.post(
        "/api/coordinator/superlink/start",
        {"insecure": False, "certificates_path": name, "listen_address": f"127.0.0.1:{stack.superlink_port}"},
    )
    assert status == 201, body
    health = stack.get("/api/coordinator/health")[1]
    assert health["superlink_running"] and health["superlink_insecure"] is False
    for partition in range(2):
        status, body = stack.post(
            "/api/participant/supernode/start",
            {"partition_id": partition, "num_partitions": 2, "insecure": False, "certificates_path": name},
        )
        assert status == 201, body
    status, body = stack.post("/api/coordinator/runs/start", {"extra_args": ["--run-config", "num-server-rounds=1"]})
    assert status == 201, body
    run_id = body["run_id"]
    wait_until(lambda: FederatedRun.objects.get(pk=run_id).ended_at is not None, timeout=240, message="run end")
    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "completed", run.status_detail
    superlink_log = (stack.log_dir / "superlink.log").read_text()
    assert "--ssl-certfile" in superlink_log and "--insecure" not in superlink_log.split("\n", 1)[0]


def test_secure_start_without_certificates_is_refused_naming_the_field(stack: Stack) -> None:
    status, body = stack.post("/api/coordinator/superlink/start", {"insecure": False})
    assert status == 400 and body["field"] == "certificates_path"
    status, body = stack.post("/api/coordinator/superlink/start", {"insecure": False, "certificates_path": "../../etc"})
    assert status == 400 and body["field"] == "certificates_path"
