"""A run that fails inside Flower ends `failed` with Flower's status details, though `flwr run` exits 0."""

from __future__ import annotations

import pytest

from orchestration.models import FederatedRun
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def test_run_failing_in_the_serverapp_is_marked_failed_with_flowers_cause_and_last_lines(stack: Stack) -> None:
    assert (
        stack.post("/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{stack.superlink_port}"})[0]
        == 201
    )
    status, body = stack.post(
        "/api/coordinator/runs/start", {"extra_args": ["--run-config", 'strategy="no-such-strategy"']}
    )
    assert status == 201, body
    run_id = body["run_id"]
    wait_until(lambda: FederatedRun.objects.get(pk=run_id).ended_at is not None, timeout=120, message="run end")
    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "failed"
    assert run.exit_code == 0  # `flwr run` says nothing useful; Flower's run status does
    assert "finished:failed" in run.status_detail
    assert "no-such-strategy" in run.status_detail
    with open(stack.app_dir / "pyproject.toml", encoding="utf-8") as handle:
        assert 'current-run-id = ""' in handle.read()
