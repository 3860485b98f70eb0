"""Acceptance: a real federation driven only through FedML's HTTP API (Daphne + supervisor +
flower-superlink + 2 flower-supernode + `flwr run`), checked against the database and files."""

from __future__ import annotations

import tomllib

import pytest

from orchestration.models import FederatedRun, LogLine, NodeSession, RoundMetric
from tests.stack import Stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def _current_run_id(stack: Stack) -> str:
    with open(stack.app_dir / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["flwr"]["app"]["config"]["current-run-id"]


def _assert_log_matches_file(lines: list[LogLine], path: str) -> None:
    seqs = [line.seq for line in lines]
    assert seqs == list(range(1, len(seqs) + 1)), "sequence numbers must be gap-free from 1"
    with open(path, encoding="utf-8") as handle:
        file_lines = handle.read().splitlines()
    assert [line.text for line in lines] == file_lines


def test_three_round_run_through_http_api_completes_with_metrics_logs_and_closed_sessions(stack: Stack) -> None:
    status, body = stack.post(
        "/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{stack.superlink_port}"}
    )
    assert status == 201, body
    assert int(body["pid"]) > 0 and body["log_path"].endswith("superlink.log")  # pids are strings (types.ts)
    superlink_session = body["session_id"]

    supernodes = []
    for partition in range(2):
        status, body = stack.post(
            "/api/participant/supernode/start",
            {"partition_id": partition, "num_partitions": 2, "superlink_address": f"127.0.0.1:{stack.superlink_port}"},
        )
        assert status == 201, body
        supernodes.append(body["session_id"])
    assert (
        len({stack.get(f"/api/participant/supernodes/{sid}")[1]["runtime_config"]["port"] for sid in supernodes}) == 2
    )

    status, body = stack.post(
        "/api/coordinator/runs/start",
        {"federation_name": "production", "extra_args": ["--run-config", "num-server-rounds=3"]},
    )
    assert status == 201, body
    run_id = body["run_id"]
    assert int(body["pid"]) > 0 and body["flower_run_id"], body
    assert _current_run_id(stack) == run_id
    status, health = stack.get("/api/coordinator/health")
    assert health["run_active"] and health["run_info"]["run_id"] == run_id and health["superlink_running"]
    assert stack.get("/api/coordinator/runs/active")[1]["run"]["run_id"] == run_id

    wait_until(
        lambda: stack.get("/api/coordinator/runs/active")[1]["run"] is None, timeout=300, interval=1, message="run end"
    )

    run = FederatedRun.objects.get(pk=run_id)
    assert run.status == "completed", run.status_detail
    assert run.flower_run_id == body["flower_run_id"]
    assert "finished:completed" in run.status_detail
    assert run.ended_at is not None and run.exit_code == 0
    assert _current_run_id(stack) == ""

    metrics = RoundMetric.objects.filter(run=run, phase="evaluate").order_by("round")
    assert [m.round for m in metrics] == [1, 2, 3]
    for metric in metrics:
        assert 0.0 <= metric.aggregated["accuracy"] <= 1.0
        assert len(metric.per_node) == 2
    assert RoundMetric.objects.filter(run=run, phase="train").count() == 3
    assert run.metrics["evaluate"]["3"]["accuracy"] > 0.85
    assert run.metrics["artifact_path"].endswith(".pt")

    # Every process's lines, gap-free and identical to its log file.
    run_lines = list(LogLine.objects.filter(run=run).order_by("seq"))
    assert any("Successfully started run" in line.text for line in run_lines)
    _assert_log_matches_file(run_lines, run.log_path)

    status, _ = stack.post("/api/participant/supernode/stop", {})
    assert status == 200
    status, body = stack.post("/api/coordinator/superlink/stop")
    assert status == 200
    wait_until(
        lambda: not NodeSession.objects.filter(pk__in=[superlink_session, *supernodes], ended_at__isnull=True).exists(),
        timeout=90,
        message="sessions closed",
    )
    for session in NodeSession.objects.filter(pk__in=[superlink_session, *supernodes]):
        assert session.status == "stopped"
        assert session.exit_code is not None or session.signal is not None
        lines = list(LogLine.objects.filter(session=session).order_by("seq"))
        assert lines, f"no log lines for {session.kind}"
        _assert_log_matches_file(lines, session.log_path)
    # ClientApp output reaches only its SuperNode's log.
    supernode_text = "\n".join(LogLine.objects.filter(session_id__in=supernodes).values_list("text", flat=True))
    assert "train" in supernode_text.lower()
    assert not stack.leftovers() or all("daphne" in cmd or "runsupervisor" in cmd for _, cmd in stack.leftovers())
