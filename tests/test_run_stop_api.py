"""POST /runs/stop stops a long run through Flower's own stop path (`flwr stop`), not by killing it."""

from __future__ import annotations

import pytest

from orchestration.models import FederatedRun, LogLine
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def test_stop_long_run_through_flower_reports_it_finished_and_row_says_stopped(stack: Stack) -> None:
    run_id = stack.start_federation(rounds=200)
    # Let it get going: the first round's training has been sampled.
    wait_until(
        lambda: LogLine.objects.filter(run_id=run_id, text__contains="configure_train").exists(),
        timeout=120,
        message="round 1",
    )

    status, body = stack.post("/api/coordinator/runs/stop")
    assert status == 200, body
    # The timeout only catches a hang: the stack's stop timeout (10 s) plus the escalation.
    wait_until(lambda: FederatedRun.objects.get(pk=run_id).status == "stopped", timeout=60, message="stopped")

    run = FederatedRun.objects.get(pk=run_id)
    assert run.ended_at is not None
    assert "finished:stopped" in run.status_detail
    # `flwr stop` went through Flower's control path, and its output is in the run's log.
    assert LogLine.objects.filter(run=run, source="control").exists()
    with open(stack.app_dir / "pyproject.toml", encoding="utf-8") as handle:
        assert 'current-run-id = ""' in handle.read()
    assert stack.get("/api/coordinator/health")[1]["run_active"] is False
