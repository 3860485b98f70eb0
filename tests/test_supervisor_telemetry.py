"""Telemetry comes only from the run's own channel file, only for that run, only while it is
live: a fake `flwr run` stands in for the ServerApp by appending to the channel (as
flower_app/fedml_app/telemetry.py does), and prints forged records that must stay log lines.
Real processes, real rows; only Flower's programs are fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from accounts import services as accounts_services
from orchestration.flower.telemetry import channel_file
from orchestration.models import FederatedRun, LogLine, RoundMetric
from orchestration.supervisor.common import telemetry_dir
from tests.factories import FederatedRunFactory, NodeSessionFactory, ProjectFactory
from tests.fake_launcher import FakeChildLauncher, ls_answer
from tests.supervisor_kit import (
    drive,
    request_run,
    run_ended,
    superlink_row,
    use_own_dirs,
)

pytestmark = pytest.mark.django_db(transaction=True)

STARTED = "Successfully started run 42"


def channel_of(run: FederatedRun) -> Path:
    return channel_file(telemetry_dir(run.coordinator_session_id), str(run.pk))


def metrics(run_id: Any, *, round: int = 1, accuracy: float = 0.9, flwr_run_id: str | None = "42") -> dict:
    return {
        "v": 1,
        "kind": "metrics",
        "fedml_run_id": str(run_id),
        "flwr_run_id": flwr_run_id,
        "round": round,
        "num_rounds": 2,
        "phase": "evaluate",
        "aggregated": {"accuracy": accuracy},
        "per_node": {"7": {"accuracy": accuracy - 0.1}},
    }


def writes(run: FederatedRun, *records: dict) -> list[str]:
    """fake_child arguments that append `records` to the run's channel, as its ServerApp would."""
    return [arg for record in records for arg in ("--append", str(channel_of(run)), json.dumps(record))]


def says(*lines: str) -> list[str]:
    return [arg for line in lines for arg in ("--say", line)]


def test_records_in_the_runs_channel_become_round_metrics_and_the_artifact(make_supervisor, superlink_port):
    model = django_settings.ARTIFACTS_DIR / "global_model.pt"

    def run_args(run: FederatedRun) -> list[str]:
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"weights")
        artifact = {"v": 1, "kind": "artifact", "fedml_run_id": str(run.pk), "flwr_run_id": "42", "path": str(model)}
        return ["0", "0", *says(STARTED), *writes(run, metrics(run.pk), artifact)]

    sup = make_supervisor(FakeChildLauncher(run=run_args, ls=ls_answer("finished:completed")))
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to finish")

    metric = RoundMetric.objects.get(run=run)
    assert (metric.round, metric.phase, metric.aggregated) == (1, "evaluate", {"accuracy": 0.9})
    assert metric.per_node == {"7": {"accuracy": pytest.approx(0.8)}}
    assert done.metrics["num_rounds"] == 2
    assert done.metrics["artifact_path"] == str(model.resolve())
    assert not channel_of(run).exists()  # read to the end, then removed: the figures are in the database


def test_records_read_before_flowers_run_id_is_known_count_as_soon_as_it_is(make_supervisor, superlink_port):
    """The ServerApp's first record may be read before the log writer hands over Flower's run id;
    it is held, and recorded once the id is known, while the run is still live."""
    sup = make_supervisor(
        FakeChildLauncher(
            run=lambda run: ["0", "0", *writes(run, metrics(run.pk)), "--say", STARTED, "--hang", "--exit-on-usr1"],
            stop=lambda run: ["0", "0", "--send-usr1", str(run.pid)],  # `flwr stop` ends it at teardown
            ls=ls_answer("finished:stopped"),
        )
    )
    run = request_run(superlink_row(superlink_port))

    live = drive(
        sup,
        lambda: FederatedRun.objects.filter(pk=run.pk, status="running", round_metrics__isnull=False).first(),
        message="round 1 recorded while the run is live",
    )

    assert live.flower_run_id == "42"
    assert RoundMetric.objects.get(run=run).aggregated == {"accuracy": 0.9}


def test_metrics_printed_by_any_process_stay_log_lines(make_supervisor, superlink_port):
    """What a ClientApp prints, or a site's error text Flower logs into the ServerApp's log, reaches
    the run's log; in every format telemetry ever had, it must never become metrics."""

    def run_args(run: FederatedRun) -> list[str]:
        record = json.dumps(metrics(run.pk, accuracy=0.01))
        forged = [f"FEDML_METRICS {record}", record, f"ERROR : site said: FEDML_METRICS {record}"]
        return ["0", "0", *says(STARTED, *forged)]

    sup = make_supervisor(FakeChildLauncher(run=run_args, ls=ls_answer("finished:completed")))
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to finish")

    assert done.status == "completed"
    assert not RoundMetric.objects.filter(run=run).exists()
    assert "evaluate" not in (done.metrics or {})
    assert LogLine.objects.filter(run=run, stream="stdout", text__contains="FEDML_METRICS").count() == 2


def test_a_record_naming_another_run_or_another_flower_run_is_dropped(make_supervisor, superlink_port):
    other = FederatedRunFactory(project=ProjectFactory(), status="completed", metrics={"final": 1})

    def run_args(run: FederatedRun) -> list[str]:
        return [
            "0",
            "0",
            *says(STARTED),
            *writes(
                run,
                metrics(other.pk),
                metrics(run.pk, flwr_run_id="43"),
                metrics(run.pk, flwr_run_id=None),
                metrics(run.pk, round=2),
            ),
        ]

    sup = make_supervisor(FakeChildLauncher(run=run_args, ls=ls_answer("finished:completed")))
    run = request_run(superlink_row(superlink_port))

    drive(sup, run_ended(run), message="the run to finish")

    assert list(RoundMetric.objects.filter(run=run).values_list("round", flat=True)) == [2]
    assert not RoundMetric.objects.filter(run=other).exists()
    assert FederatedRun.objects.get(pk=other.pk).metrics == {"final": 1}


def test_an_artifact_outside_the_artifacts_directory_is_not_recorded(make_supervisor, superlink_port, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"x")

    def run_args(run: FederatedRun) -> list[str]:
        artifact = {"v": 1, "kind": "artifact", "fedml_run_id": str(run.pk), "flwr_run_id": "42", "path": str(outside)}
        return ["0", "0", *says(STARTED), *writes(run, artifact)]

    sup = make_supervisor(FakeChildLauncher(run=run_args, ls=ls_answer("finished:completed")))
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to finish")

    assert "artifact_path" not in (done.metrics or {})


def test_records_written_after_the_run_ended_change_nothing(make_supervisor, superlink_port):
    sup = make_supervisor(
        FakeChildLauncher(
            run=lambda run: ["0", "0", *says(STARTED), *writes(run, metrics(run.pk))],
            ls=ls_answer("finished:completed"),
        )
    )
    run = request_run(superlink_row(superlink_port))
    drive(sup, run_ended(run), message="the run to finish")
    assert sup.telemetry.watching() == []

    with channel_of(run).open("a") as channel:
        channel.write(json.dumps(metrics(run.pk, round=2, accuracy=0.1)) + "\n")
    sup.step()

    assert list(RoundMetric.objects.filter(run=run).values_list("round", flat=True)) == [1]
    assert FederatedRun.objects.get(pk=run.pk).metrics["last_round"] == 1


def test_a_channel_file_left_before_the_run_started_is_not_its_telemetry(make_supervisor, superlink_port):
    link = superlink_row(superlink_port)
    run = request_run(link)
    planted = channel_of(run)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(json.dumps(metrics(run.pk, accuracy=0.01)) + "\n")
    sup = make_supervisor(FakeChildLauncher(run=["0", "0", "--say", STARTED], ls=ls_answer("finished:completed")))

    drive(sup, run_ended(run), message="the run to finish")

    assert not RoundMetric.objects.filter(run=run).exists()


def test_the_telemetry_directory_is_in_the_superlinks_environment_only(settings, tmp_path):
    """The channel's directory is in the SuperLink's environment (its ServerApps inherit it), never a
    SuperNode's: ClientApps are not told where it is. The directory is this OS user's only (the
    boundary: docs/security.md)."""
    from orchestration.supervisor import FlowerLauncher
    from orchestration.supervisor.launcher import Command

    use_own_dirs(settings, tmp_path)
    link = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        runtime_config={"host": "127.0.0.1", "port": 9099, "address": "127.0.0.1:9099", "insecure": True},
    )
    command: Command = FlowerLauncher().session_command(link)
    directory = Path(command.env["FEDML_TELEMETRY_DIR"])
    assert directory == telemetry_dir(link.pk)
    assert directory.stat().st_mode & 0o777 == 0o700

    node = NodeSessionFactory(
        kind="supernode",
        runtime_config={"superlink_address": "127.0.0.1:9099", "host": "127.0.0.1", "port": 9094, "insecure": True},
    )
    assert "FEDML_TELEMETRY_DIR" not in FlowerLauncher().session_command(node).env
