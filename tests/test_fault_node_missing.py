"""Fault: a run whose SuperNodes are not all there. Flower's strategy would wait for ever; the
run's row says what it waits for (a `run.status` event too) and, after the run config's
`nodes-timeout`, the run fails with that as its cause. Real SuperLink, SuperNode and `flwr run`."""

from __future__ import annotations

import time

import pytest

from orchestration.models import FederatedRun, ProjectEvent
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_a_run_short_of_nodes_says_so_and_fails_after_its_nodes_timeout(stack: Stack) -> None:
    status, body = stack.post(
        "/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{stack.superlink_port}"}
    )
    assert status == 201, body
    status, body = stack.post("/api/participant/supernode/start", {"partition_id": 0, "num_partitions": 2})
    assert status == 201, body
    config = ["--run-config", "min-nodes=2", "--run-config", "nodes-timeout=10", "--run-config", "num-server-rounds=1"]
    status, body = stack.post("/api/coordinator/runs/start", {"extra_args": config})
    assert status in (201, 202), body
    run_id = body["run_id"]

    waiting = wait_until(
        lambda: FederatedRun.objects.filter(
            pk=run_id, status="running", status_detail__startswith="Waiting for nodes: 1 connected, 2 required"
        ).first(),
        timeout=120,
        message="the run's detail saying what it waits for",
    )
    said_at = time.monotonic()
    events = ProjectEvent.objects.filter(type="run.status", payload__run_id=run_id)
    assert any(e.payload["status_detail"] == waiting.status_detail for e in events)

    wait_until(lambda: FederatedRun.objects.get(pk=run_id).ended_at is not None, timeout=120, message="run end")
    ended_after = time.monotonic() - said_at

    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "failed"
    assert run.status_detail.startswith("Gave up waiting for nodes: 1 connected, 2 required"), run.status_detail
    assert "finished:failed" in run.status_detail
    assert run.status_detail.split("Last lines:\n", 1)[1].strip()  # the run's last lines, not an empty list
    print(f"\nnode missing: waiting shown, failed {ended_after:.1f} s later (nodes-timeout 10 s)")
    stack.quiesce()
    assert stack.children() == []
