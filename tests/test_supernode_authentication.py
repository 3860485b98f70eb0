"""Flower's SuperNode authentication through FedML: a participant's key is enrolled by the
coordinator, its SuperNode joins; once revoked, a SuperNode with that key is refused."""

from __future__ import annotations

import uuid

import pytest

from orchestration.models import FederatedRun, LogLine, NodeEnrollment, NodeSession
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def _start_supernode(stack: Stack, partition: int, certificates: str) -> dict:
    status, body = stack.post(
        "/api/participant/supernode/start",
        {"partition_id": partition, "num_partitions": 2, "insecure": False, "certificates_path": certificates},
    )
    assert status == 201, body
    return body


def test_enrolled_supernode_trains_over_tls_and_a_revoked_one_is_refused(stack: Stack) -> None:
    certificates = f"tls-{uuid.uuid4().hex[:8]}"  # the shared stack's certificates directory outlives this test
    stack.manage("create_certificates", "--name", certificates, "--host", "127.0.0.1")
    status, body = stack.post(
        "/api/coordinator/superlink/start",
        {
            "insecure": False,
            "certificates_path": certificates,
            "listen_address": f"127.0.0.1:{stack.superlink_port}",
            "extra_args": ["--enable-supernode-auth"],
        },
    )
    assert status == 201, body
    status, keys = stack.post("/api/participant/supernode/keys")
    assert status == 200 and keys["public_key"].startswith("ecdsa-sha2-nistp384 ")
    assert stack.post("/api/participant/supernode/keys")[1]["public_key"] == keys["public_key"]  # created once

    status, enrolled = stack.post(
        f"/api/coordinator/nodes/{keys['node_id']}/enroll", {"public_key": keys["public_key"]}
    )
    assert status == 201, enrolled["detail"]
    assert enrolled["status"] == "registered" and enrolled["flower_node_id"]
    assert stack.post(f"/api/coordinator/nodes/{keys['node_id']}/enroll", {"public_key": keys["public_key"]})[0] == 409

    joined = _start_supernode(stack, 0, certificates)
    wait_until(
        lambda: LogLine.objects.filter(
            session_id=joined["session_id"], text__contains=f"SuperNode ID: {enrolled['flower_node_id']}"
        ).exists(),
        timeout=60,
        message="registered SuperNode joins",
    )

    # A federation over TLS with the authenticated SuperNode trains a round.
    status, run = stack.post(
        "/api/coordinator/runs/start", {"extra_args": ["--run-config", "num-server-rounds=1 min-nodes=1"]}
    )
    assert status == 201, run
    wait_until(lambda: FederatedRun.objects.get(pk=run["run_id"]).ended_at is not None, timeout=180, message="run")
    assert FederatedRun.objects.get(pk=run["run_id"]).status == "completed"

    status, revoked = stack.post(f"/api/coordinator/nodes/{keys['node_id']}/revoke")
    assert status == 200 and revoked["status"] == "revoked", revoked
    refused = _start_supernode(stack, 1, certificates)
    wait_until(
        lambda: NodeSession.objects.get(pk=refused["session_id"]).status == "failed", timeout=60, message="refused"
    )
    session = NodeSession.objects.get(pk=refused["session_id"])
    assert "Failed to activate SuperNode" in session.status_detail
    assert NodeEnrollment.objects.get(pk=enrolled["enrollment_id"]).revoked_at is not None


def test_enrollment_refuses_a_key_that_is_not_an_openssh_nist_ec_key(stack: Stack) -> None:
    status, keys = stack.post("/api/participant/supernode/keys")
    for bad in ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7", "not a key", "ecdsa-sha2-nistp384 AAAA\nsecond line"]:
        status, body = stack.post(f"/api/coordinator/nodes/{keys['node_id']}/enroll", {"public_key": bad})
        assert status == 400 and body["field"] == "public_key", body
    assert not NodeEnrollment.objects.exists()
