"""Fault: SIGTERM to the supervisor mid-run (a deploy, a host shutdown). It stops the run through
Flower, then the SuperNodes, then the SuperLink, each step bounded, closes every row truthfully
and leaves no process behind. Real SuperLink, SuperNodes and `flwr run`."""

from __future__ import annotations

import signal
import time

import pytest

from orchestration.models import FederatedRun, LogLine, NodeSession, RoundMetric
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_sigterm_to_the_supervisor_mid_run_stops_run_supernodes_and_superlink_in_order(stack: Stack) -> None:
    run_id = stack.start_federation(rounds=50)
    wait_until(lambda: RoundMetric.objects.filter(run_id=run_id, round=1).exists(), timeout=180, message="round 1")
    supervisor = stack.procs.pop("supervisor")
    supervisor.send_signal(signal.SIGTERM)
    began = time.monotonic()
    assert supervisor.wait(timeout=180) == 0
    took = time.monotonic() - began

    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "stopped" and "finished:stopped" in run.status_detail, run.status_detail
    sessions = list(NodeSession.objects.all())
    assert sessions and all(s.status == "stopped" and s.ended_at for s in sessions), [
        (s.kind, s.status, s.status_detail) for s in sessions
    ]
    assert all("supervisor shut down" in s.status_detail for s in sessions)
    ended = {s.kind: [] for s in sessions}
    for s in sessions:
        ended[s.kind].append(s.ended_at)
    # In order: the run before any SuperNode, every SuperNode before the SuperLink.
    assert run.ended_at <= min(ended["supernode"]) and max(ended["supernode"]) <= min(ended["superlink"])
    assert stack.children() == []
    for owner in [{"run": run}, *({"session": s} for s in sessions)]:
        seqs = list(LogLine.objects.filter(**owner).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    print(f"\nsupervisor SIGTERM mid-run: every row closed and no process left after {took:.1f} s")
    stack.start_supervisor()  # the shared stack goes on with a supervisor
