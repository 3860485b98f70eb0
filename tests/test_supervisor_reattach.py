"""A `flwr run` that dies of a signal FedML did not send while Flower still runs the run: the
supervisor follows the run with `flwr log --stream` (Flower replays the run's log from its start;
the lines already saved are not repeated), and says so truthfully when that fails too. Fake
children stand in for Flower's programs; the processes, pipes, signals and rows are real."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from orchestration.models import FederatedRun, LogLine
from tests.fake_launcher import FakeChildLauncher, ls_answer
from tests.supervisor_kit import (
    child_of,
    drive,
    request_run,
    run_ended,
    superlink_row,
)

pytestmark = pytest.mark.django_db(transaction=True)

STARTED = "Successfully started run 42"


def _texts(run: FederatedRun) -> list[str]:
    return [line.text for line in LogLine.objects.filter(run=run).order_by("seq")]


def _streaming(run: FederatedRun, lines: int):  # noqa: ANN202
    return lambda: LogLine.objects.filter(run=run, text=f"line {lines}").exists()


def test_a_flwr_run_killed_by_someone_else_is_replaced_by_flwr_log_without_repeating_a_line(
    make_supervisor, superlink_port
):
    launcher = FakeChildLauncher(
        run=("5", "0", "--say", STARTED, "--hang"),  # streamed five lines of the run's log, then hangs
        log=("8", "0"),  # Flower's replay: the five saved ones, then three more, then the run ends
        ls=ls_answer("finished:completed"),
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))
    drive(sup, _streaming(run, 5), message="five streamed lines saved")
    killed = child_of(sup, run.pk)
    assert killed is not None

    os.kill(killed.pid, signal.SIGKILL)  # not FedML: the OOM killer, an operator, a crash
    done = drive(sup, run_ended(run), message="the run to finish")

    assert done.status == "completed"
    assert launcher.of("log") == [str(run.pk)]
    texts = _texts(run)
    streamed = [t for t in texts if t.startswith("line ")]
    assert streamed == [f"line {i}" for i in range(1, 9)]  # every line once, in order
    said = next(t for t in texts if "a signal FedML did not send" in t)
    assert said.startswith("[fedml] `flwr run` died with signal SIGKILL")
    assert "where it repeats the 5 lines already saved, they are skipped" in said
    assert texts.index(said) < texts.index("line 6")
    assert done.pid != killed.pid  # the row names the process following the run now
    rows = list(LogLine.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert rows == list(range(1, len(rows) + 1))
    assert Path(done.log_path).read_text(encoding="utf-8").splitlines() == texts


def test_when_flwr_log_fails_too_the_run_ends_with_flowers_outcome_saying_its_log_may_be_incomplete(
    make_supervisor, superlink_port
):
    launcher = FakeChildLauncher(
        run=("3", "0", "--say", STARTED, "--hang"),
        log=("0", "1", "--say", "Error: could not connect to the SuperLink"),
        ls=ls_answer("finished:completed"),
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))
    drive(sup, _streaming(run, 3), message="three streamed lines saved")
    os.kill(child_of(sup, run.pk).pid, signal.SIGKILL)

    done = drive(sup, run_ended(run), message="the run to finish")

    assert done.status == "completed"  # Flower's outcome, not the exit of a log follower
    assert "FedML's log of the run may be incomplete: the `flwr log` following it exited with code 1" in (
        done.status_detail
    )
    assert "Error: could not connect to the SuperLink" in _texts(run)


def test_a_flwr_run_fedml_stopped_is_not_re_attached(make_supervisor, superlink_port, settings):
    settings.STOP_TIMEOUT_SECONDS = 1
    launcher = FakeChildLauncher(
        run=("2", "0", "--say", STARTED, "--hang", "--ignore-term"), ls=ls_answer("finished:stopped")
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))
    drive(sup, _streaming(run, 2), message="streaming")

    sup.table.terminate(child_of(sup, run.pk))  # FedML's own SIGTERM, escalated to SIGKILL
    done = drive(sup, run_ended(run), message="the run to end")

    assert launcher.of("log") == []
    assert done.signal == signal.SIGKILL
