"""Acceptance: the same federation flow through the management commands."""

from __future__ import annotations

import pytest

from orchestration.models import FederatedRun, LogLine, NodeSession, RoundMetric
from tests.stack import Stack

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def test_federation_through_management_commands_completes_and_follow_shows_round_progress(stack: Stack) -> None:
    out = stack.manage("superlink_start", f"--listen-address=127.0.0.1:{stack.superlink_port}").stdout
    assert "SuperLink started" in out
    for partition in range(2):
        out = stack.manage("supernode_start", f"--partition-id={partition}", "--num-partitions=2").stdout
        assert "SuperNode started" in out
    status = stack.manage("fedml_status").stdout
    assert "supervisor  alive" in status and "supernodes  2 live" in status

    follow = stack.manage("run_start", "--run-config", "num-server-rounds=2", "--follow", timeout=400)
    assert "[fedml] round 1/2 evaluate" in follow.stdout
    assert "[fedml] round 2/2 evaluate" in follow.stdout
    assert "completed" in follow.stdout.splitlines()[-1]

    run = FederatedRun.objects.get()
    assert run.status == "completed" and run.flower_run_id
    assert RoundMetric.objects.filter(run=run, phase="evaluate").count() == 2
    # --follow printed the run's log from the database, in order.
    texts = list(LogLine.objects.filter(run=run).order_by("seq").values_list("text", flat=True))
    assert texts[1] in follow.stdout and texts[-1] in follow.stdout

    assert "SuperNode stopped" in stack.manage("supernode_stop").stdout
    assert "SuperLink stopped" in stack.manage("superlink_stop").stdout
    assert set(NodeSession.objects.values_list("status", flat=True)) == {"stopped"}


def test_commands_refuse_bad_input_with_command_error_naming_the_field(stack: Stack) -> None:
    result = stack.manage("superlink_start", "--listen-address=not-an-address", check=False)
    assert result.returncode != 0
    assert "listen_address" in result.stderr
    result = stack.manage("supernode_start", "--extra-arg=--database", "--extra-arg=/etc/passwd", check=False)
    assert result.returncode != 0 and "extra_args" in result.stderr
    result = stack.manage("supernode_start", "--clientappio-api-address=0.0.0.0:9400", check=False)
    assert result.returncode != 0 and "clientappio_api_address: 0.0.0.0 is a wildcard address" in result.stderr
    result = stack.manage("run_start", check=False)
    assert result.returncode != 0 and "no SuperLink is running" in result.stderr
    assert not NodeSession.objects.exists() and not FederatedRun.objects.exists()
