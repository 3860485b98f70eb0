"""Killing the supervisor with SIGKILL mid-run, then starting it again: no orphans, truthful rows."""

from __future__ import annotations

import os
import signal

import pytest

from orchestration.models import FederatedRun, LogLine, NodeSession
from orchestration.procs import identity_alive
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_supervisor_sigkill_mid_run_then_restart_leaves_no_orphans_and_truthful_rows(stack: Stack) -> None:
    run_id = stack.start_federation(rounds=200)
    wait_until(
        lambda: LogLine.objects.filter(run_id=run_id, text__contains="configure_train").exists(),
        timeout=120,
        message="round 1",
    )
    identities = [s.runtime_config["process"] for s in NodeSession.objects.all()]
    identities.append(FederatedRun.objects.get(pk=run_id).config["process"])
    assert all(identity_alive(i) for i in identities)

    old = stack.procs.pop("supervisor")
    os.killpg(old.pid, signal.SIGKILL)
    old.wait(timeout=10)
    # The children outlive it (own process groups) and nobody may claim them as alive for long.
    assert all(identity_alive(i) for i in identities)
    wait_until(lambda: not stack.get("/health")[1]["supervisor_alive"], timeout=20, message="heartbeat goes stale")
    status, body = stack.post("/api/participant/supernode/start", {"partition_id": 0, "num_partitions": 2})
    assert status == 503 and "runsupervisor" in body["detail"]

    stack.start_supervisor()
    wait_until(lambda: FederatedRun.objects.get(pk=run_id).ended_at is not None, timeout=90, message="run reconciled")
    wait_until(lambda: not NodeSession.objects.filter(ended_at__isnull=True).exists(), timeout=90, message="sessions")

    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "stopped", run.status_detail
    assert "died" in run.status_detail and "finished:stopped" in run.status_detail
    for session in NodeSession.objects.all():
        assert session.status == "lost"
        assert "terminated the orphaned process group" in session.status_detail
    assert not any(identity_alive(i) for i in identities)
    leftovers = [cmd for _, cmd in stack.leftovers() if "daphne" not in cmd and "runsupervisor" not in cmd]
    assert leftovers == []
