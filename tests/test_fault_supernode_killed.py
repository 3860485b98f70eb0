"""Fault: a SuperNode killed with SIGKILL by someone other than FedML. With restart policy
`on-failure` it comes back on the same row with a new process, its log continuing, and the
federation still runs. Real SuperLink, SuperNodes and `flwr run`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from orchestration.models import FederatedRun, LogLine, NodeSession
from orchestration.procs import identity_alive
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_a_killed_supernode_with_restart_policy_comes_back_and_the_federation_runs(stack: Stack) -> None:
    status, body = stack.post(
        "/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{stack.superlink_port}"}
    )
    assert status == 201, body
    sessions = []
    for partition in range(2):
        status, body = stack.post(
            "/api/participant/supernode/start",
            {"partition_id": partition, "num_partitions": 2, "restart_policy": "on-failure"},
        )
        assert status == 201, body
        sessions.append(body["session_id"])
    victim = NodeSession.objects.get(pk=sessions[0])
    identity = victim.runtime_config["process"]

    os.killpg(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    back = wait_until(
        lambda: NodeSession.objects.filter(pk=victim.pk, status="running").exclude(pid=victim.pid).first(),
        timeout=60,
        message="the SuperNode restarted on the same row",
    )
    back_after = time.monotonic() - killed_at

    assert not identity_alive(identity)
    assert back.signal == signal.SIGKILL and "restarting in 1 s (restart 1, policy on-failure)" in "\n".join(
        LogLine.objects.filter(session=victim).values_list("text", flat=True)
    )
    # The federation still runs (a round may wait out the dead node's registration).
    status, body = stack.post(
        "/api/coordinator/runs/start",
        {"extra_args": ["--run-config", "num-server-rounds=2", "--run-config", "round-timeout=30"]},
    )
    assert status in (201, 202), body
    wait_until(lambda: FederatedRun.objects.get(pk=body["run_id"]).ended_at is not None, timeout=240, message="run")
    run = FederatedRun.objects.get(pk=body["run_id"])
    assert run.status == "completed", run.status_detail

    stack.quiesce()
    lines = list(LogLine.objects.filter(session=victim).order_by("seq"))
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert [line.text for line in lines] == Path(back.log_path).read_text(encoding="utf-8").splitlines()
    print(f"\nSuperNode SIGKILL: running again after {back_after:.1f} s; {len(lines)} lines in file and database")
    assert stack.children() == []
