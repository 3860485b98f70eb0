"""The run worker and the finisher with fake children standing in for `flwr run`, `flwr stop`
and `flwr ls`: waiting for the SuperLink to listen, Flower's run id, its outcome, stopping
through Flower, telemetry, and a SuperLink that waits for its run. Real processes, real rows;
only Flower's programs are fake."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from accounts import services as accounts_services
from orchestration import flower, services
from orchestration.logpipe import Owner
from orchestration.models import FederatedRun, LogLine, NodeSession
from tests.factories import NodeSessionFactory
from tests.fake_launcher import FakeChildLauncher, ls_answer
from tests.supervisor_kit import (
    child_of,
    drive,
    request_run,
    run_ended,
    run_on_a_silent_superlink,
    superlink_row,
)

pytestmark = pytest.mark.django_db(transaction=True)

STARTED = "Successfully started run 42"


def run_log(run: FederatedRun) -> list[LogLine]:
    return list(LogLine.objects.filter(run=run).order_by("seq"))


def current_run_id() -> str:
    return str(flower.read_app_config(django_settings.FLOWER_APP_DIR)["current-run-id"])


def test_a_run_flower_reports_completed_ends_completed_with_flowers_run_id(make_supervisor, superlink_port):
    launcher = FakeChildLauncher(run=("2", "0", "--say", STARTED), ls=ls_answer("finished:completed"))
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to finish")

    assert done.status == "completed"
    assert done.status_detail == "Flower: finished:completed"
    assert done.flower_run_id == "42"
    assert done.exit_code == 0 and done.signal is None
    assert launcher.of("ls") == [str(run.pk)]
    assert current_run_id() == ""  # cleared before the row said it ended
    texts = [line.text for line in run_log(run)]
    assert texts[0].startswith(f"[fedml] started pid {done.pid}")
    assert texts[1:4] == [STARTED, "line 1", "line 2"]
    assert texts[-1] == f"[fedml] pid {done.pid} exited with code 0"
    assert Path(done.log_path) == django_settings.LOG_DIR / "run.log"


def test_a_run_flower_reports_failed_ends_failed_with_flowers_details_and_the_last_lines(
    make_supervisor, superlink_port
):
    launcher = FakeChildLauncher(
        run=("3", "0", "--say", STARTED), ls=ls_answer("finished:failed", "ServerApp raised KeyError")
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to finish")

    assert done.status == "failed"
    assert done.status_detail.startswith("Flower: finished:failed (ServerApp raised KeyError). Last lines:\n")
    assert "line 3" in done.status_detail


def test_flwr_run_exiting_before_flower_accepted_the_run_fails_it_without_asking_flower(
    make_supervisor, superlink_port
):
    launcher = FakeChildLauncher(run=("2", "1", "--say", "Error: the app does not exist"))
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to fail")

    assert done.status == "failed"
    assert done.exit_code == 1
    assert done.status_detail.startswith("`flwr run` exited with code 1 before Flower accepted the run. Last lines:\n")
    assert "Error: the app does not exist" in done.status_detail
    assert launcher.of("ls") == []


def test_flowers_sentence_in_fedmls_own_argv_line_is_not_flower_accepting_the_run(make_supervisor, superlink_port):
    """FedML's `[fedml] started pid ...` line echoes the argv (run config included): a value holding
    Flower's sentence must not make a failed `flwr run` look accepted under another run id."""
    launcher = FakeChildLauncher(
        run=("0", "1", "--note", "Successfully started run 99", "--say", "x Successfully started run 98"),
        ls=ls_answer("finished:completed", flower_run_id="99"),
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to fail")

    assert done.status == "failed"
    assert done.flower_run_id == ""
    assert done.status_detail.startswith("`flwr run` exited with code 1 before Flower accepted the run.")
    assert launcher.of("ls") == []


def test_only_the_first_run_id_flwr_run_prints_counts(make_supervisor, superlink_port):
    """Once Flower said which run it started, what streams after it (the ServerApp's log, with
    whatever sites made it say) cannot change the id."""
    launcher = FakeChildLauncher(
        run=("0", "0", "--say", STARTED, "--say", "Successfully started run 7"), ls=ls_answer("finished:completed")
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to finish")

    assert (done.status, done.flower_run_id) == ("completed", "42")


def test_a_run_whose_superlink_is_gone_fails_when_flower_cannot_be_asked(make_supervisor, superlink_port):
    launcher = FakeChildLauncher(run=("0", "0", "--say", STARTED), ls=("0", "0"))  # `flwr ls` says nothing
    sup = make_supervisor(launcher)
    superlink = superlink_row(superlink_port)
    run = request_run(superlink)
    drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, flower_run_id="42").exists(), message="Flower's run id")
    NodeSession.objects.filter(pk=superlink.pk).update(status="failed")  # its SuperLink died meanwhile

    done = drive(sup, run_ended(run), message="the run to end")

    assert done.status == "failed"
    assert done.status_detail.startswith("could not read the run's status from the SuperLink. Last lines:\n")
    assert launcher.of("ls")  # Flower was asked, and could not answer


def test_a_run_is_stopped_through_flower_and_its_row_says_what_flower_reported(make_supervisor, superlink_port):
    def stop(run: FederatedRun) -> list[str]:
        # What `flwr stop` achieves: `flwr run --stream` exits by itself.
        return ["0", "0", "--say", "stopping run 42", "--send-usr1", str(run.pid)]

    launcher = FakeChildLauncher(
        run=("0", "0", "--say", STARTED, "--hang", "--exit-on-usr1"), stop=stop, ls=ls_answer("finished:stopped")
    )
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))
    drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="running").exists(), message="Flower's run id")

    services.run_request_stop(project=run.project)
    done = drive(sup, run_ended(run), message="the run to stop")

    assert done.status == "stopped"
    assert done.status_detail.startswith("Flower: finished:stopped. Last lines:\n")
    assert done.exit_code == 0 and done.signal is None  # it exited by itself: no SIGTERM was needed
    assert launcher.of("stop") == [str(run.pk)]
    control = [line for line in run_log(run) if line.source == "control"]
    assert "stopping run 42" in [line.text for line in control]
    assert any(line.text.startswith("[fedml] started pid") for line in control)


def test_a_run_that_cannot_be_started_fails_saying_so_in_its_log_and_row(make_supervisor, superlink_port, settings):
    settings.FLOWER_APP_DIR = settings.FLOWER_APP_DIR.parent / "no-app-here"  # no pyproject to write the run id in
    sup = make_supervisor()
    run = request_run(superlink_row(superlink_port))

    done = drive(sup, run_ended(run), message="the run to fail")

    assert done.status == "failed"
    assert done.status_detail.startswith("FedML could not start `flwr run`: ")
    assert done.pid is None
    cause = done.status_detail.removeprefix("FedML could not start `flwr run`: ")
    assert "no-app-here" in cause
    assert [line.text for line in run_log(run)] == [f"[fedml] could not start `flwr run`: {cause}"]
    assert sup.live_children() == ()


def test_a_superlink_stop_stops_its_run_first(make_supervisor, superlink_port):
    sup = make_supervisor(FakeChildLauncher(run=("1", "0", "--hang")))
    superlink = NodeSessionFactory(
        node=accounts_services.coordinator_node_ensure(),
        kind="superlink",
        status="requested",
        runtime_config={"host": "127.0.0.1", "port": superlink_port, "fake_args": ["1", "0", "--hang"]},
    )
    run = request_run(superlink)
    drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, pid__isnull=False).exists(), message="run spawned")

    services.session_request_stop(session=NodeSession.objects.get(pk=superlink.pk))

    def settled() -> NodeSession | None:
        link = NodeSession.objects.get(pk=superlink.pk)
        if FederatedRun.objects.get(pk=run.pk).is_live:
            assert link.status == "running", "the SuperLink was stopped before its run"
        return None if link.is_live else link

    link = drive(sup, settled, message="the SuperLink to stop after its run")
    stopped = FederatedRun.objects.get(pk=run.pk)
    assert stopped.status == "stopped"
    assert stopped.stop_requested_at is not None
    assert link.status == "stopped"
    assert stopped.ended_at <= link.ended_at


# ---------------------------------------------------------------- a run waits for its SuperLink to listen
def test_a_run_is_claimed_at_once_and_spawned_only_once_its_superlink_listens(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    run, port = run_on_a_silent_superlink()

    waiting = drive(
        sup,
        lambda: FederatedRun.objects.filter(pk=run.pk, status="starting", status_detail__startswith="waiting").first(),
        message="the run claimed and waiting",
    )
    for _ in range(20):
        sup.step()

    assert waiting.supervisor_id == sup.id
    assert waiting.pid is None
    assert waiting.status_detail == f"waiting for the SuperLink at 127.0.0.1:{port} to accept connections"
    assert launcher.of("run") == []
    assert child_of(sup, run.pk) is None

    with socket.create_server(("127.0.0.1", port)):
        spawned = drive(
            sup, lambda: FederatedRun.objects.filter(pk=run.pk, pid__isnull=False).first(), message="spawned"
        )
    assert launcher.of("run") == [str(run.pk)]
    assert child_of(sup, run.pk).pid == spawned.pid
    assert spawned.status == "starting"
    assert spawned.status_detail == ""  # the waiting note is gone once the process exists
    assert f'current-run-id = "{run.pk}"' in (django_settings.FLOWER_APP_DIR / "pyproject.toml").read_text()


def test_stopping_a_run_that_waits_for_its_superlink_ends_it_stopped_without_spawning(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    run, _ = run_on_a_silent_superlink()
    drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="starting").exists(), message="claimed")

    services.run_request_stop(project=run.project)
    row = drive(
        sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="stopped").first(), message="the run stopped"
    )

    assert row.ended_at is not None
    assert row.status_detail.startswith("stopped before `flwr run` was started")
    drive(sup, lambda: not sup.busy(), message="the supervisor lets go of the run")
    assert launcher.of("run") == []


def test_shutdown_ends_a_run_still_waiting_for_its_superlink_stopped(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    run, _ = run_on_a_silent_superlink()
    drive(sup, lambda: FederatedRun.objects.filter(pk=run.pk, status="starting").exists(), message="claimed")

    sup.shutdown(timeout=15)

    row = FederatedRun.objects.get(pk=run.pk)
    assert row.status == "stopped"
    assert row.status_detail == "supervisor shut down before `flwr run` was started"
    assert launcher.of("run") == []


def test_a_stop_after_flwr_run_exited_writes_to_the_runs_file_and_closes_the_log_it_opened(
    make_supervisor, superlink_port
):
    def ls(run: FederatedRun) -> list[str]:
        stopped = FederatedRun.objects.get(pk=run.pk).stop_requested_at is not None
        return ls_answer("finished:stopped" if stopped else "running")

    # `flwr run` exits at once (its stream broke), while Flower still runs the run.
    launcher = FakeChildLauncher(run=("1", "0", "--say", STARTED), stop=("0", "0", "--say", "stopping run 42"), ls=ls)
    sup = make_supervisor(launcher)
    run = request_run(superlink_row(superlink_port))
    drive(sup, lambda: launcher.of("ls"), message="the finisher asking Flower")

    services.run_request_stop(project=run.project)
    done = drive(sup, run_ended(run), message="the run to stop")

    assert done.status == "stopped"
    file_lines = Path(done.log_path).read_text(encoding="utf-8").splitlines()
    assert "stopping run 42" in file_lines  # not only in the database
    assert "stopping run 42" in [line.text for line in run_log(run)]
    assert sup.writer.recent(Owner("run", run.pk)) == []  # the log the stop opened is closed again
