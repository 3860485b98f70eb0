"""Fault: `flwr run` killed with SIGKILL mid-run by someone other than FedML (the OOM killer, an
operator). Flower still runs the run on its SuperLink; FedML follows it with `flwr log --stream`
and the run ends `completed` with every round's metrics, the model, and its log in file and
database alike, no line twice. Real SuperLink, SuperNodes and `flwr`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from orchestration.models import FederatedRun, LogLine, RoundMetric
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.fault, pytest.mark.django_db(transaction=True)]

ROUNDS = 6


def test_flwr_run_killed_mid_run_is_followed_with_flwr_log_and_the_run_completes_whole(stack: Stack) -> None:
    run_id = stack.start_federation(rounds=ROUNDS)
    wait_until(
        lambda: RoundMetric.objects.filter(run_id=run_id, round=1, phase="evaluate").exists(),
        timeout=180,
        message="round 1 evaluated",
    )
    killed = FederatedRun.objects.get(pk=run_id)
    assert killed.status == "running" and killed.pid
    os.killpg(killed.pid, signal.SIGKILL)  # its whole process group, as the OOM killer's victim would leave it
    killed_at = time.monotonic()
    following = wait_until(
        lambda: FederatedRun.objects.filter(pk=run_id, status="running").exclude(pid=killed.pid).first(),
        timeout=60,
        message="the row naming the `flwr log` that follows the run",
    )
    reattached_after = time.monotonic() - killed_at
    assert "following it with `flwr log --stream`" in following.status_detail

    wait_until(lambda: FederatedRun.objects.get(pk=run_id).ended_at is not None, timeout=300, message="run end")

    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "completed", run.status_detail
    assert "finished:completed" in run.status_detail
    assert run.pid != killed.pid  # the `flwr log` that followed the run
    evaluated = list(RoundMetric.objects.filter(run=run, phase="evaluate").values_list("round", flat=True))
    assert sorted(evaluated) == list(range(1, ROUNDS + 1))  # telemetry never depended on `flwr run`
    assert Path(run.metrics["artifact_path"]).is_file()

    lines = list(LogLine.objects.filter(run=run).order_by("seq"))
    texts = [line.text for line in lines]
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert texts == Path(run.log_path).read_text(encoding="utf-8").splitlines()  # file and database agree
    said = next(t for t in texts if "a signal FedML did not send" in t)
    assert said.startswith("[fedml] `flwr run` died with signal SIGKILL")
    # Flower's replay repeats the run's log from its start: each round's header is there once.
    for round_ in (1, ROUNDS):
        assert sum(f"[ROUND {round_}/{ROUNDS}]" in t for t in texts) == 1, "\n".join(texts)
    print(f"\nflwr run SIGKILL: re-attached after {reattached_after:.1f} s; {len(lines)} lines in file and database")
    stack.quiesce()
    assert stack.children() == []
