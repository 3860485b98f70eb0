"""The supervisor's smaller workers driven directly: the reaper (short commands, deadlines, the
orphan sweep), enrollments, the scope and the heartbeat. Real fake-child processes, real rows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from accounts import services as accounts_services
from orchestration import selectors
from orchestration.models import NodeEnrollment, NodeSession
from orchestration.supervisor import Command
from tests.factories import (
    NodeEnrollmentFactory,
    NodeFactory,
    NodeSessionFactory,
    ProjectFactory,
    SupervisorHeartbeatFactory,
)
from tests.fake_launcher import FakeChildLauncher, fake_argv, flower_says
from tests.stack import free_port
from tests.supervisor_kit import MakeSupervisor, drive, started_supervisors, use_own_dirs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def make_supervisor(settings, tmp_path: Path) -> Iterator[MakeSupervisor]:
    use_own_dirs(settings, tmp_path)
    yield from started_supervisors()


def command(*args: str) -> Command:
    return Command(fake_argv(*args), django_settings.FLWR_HOME_ROOT / "fake-command")


# ---------------------------------------------------------------- the reaper
def test_a_short_commands_output_is_its_answer_once_the_loop_reaped_it(make_supervisor):
    sup = make_supervisor()

    answer = sup.table.submit(command("3", "0", "--say", "hello"), label="answer", subject_id="x")
    drive(sup, answer.done, message="the command's answer")

    assert answer.result() == ["hello", "line 1", "line 2", "line 3"]
    assert sup.live_children() == ()


def test_a_short_command_past_its_deadline_is_killed_and_answers_what_it_printed(make_supervisor):
    sup = make_supervisor()

    answer = sup.table.submit(command("2", "0", "--hang"), label="hangs", subject_id="x", timeout=0)
    child = sup.live_children()[0]
    drive(sup, answer.done, message="the command killed")

    assert child.exit_signal == 9  # SIGKILL
    assert child.kill_sent_at is not None
    assert set(answer.result()) <= {"line 1", "line 2"}


def test_a_short_command_that_cannot_start_answers_with_the_error(make_supervisor, settings):
    sup = make_supervisor()

    answer = sup.table.submit(Command(["/nonexistent/flwr"], settings.FLWR_HOME_ROOT / "x"), label="x", subject_id="x")

    assert isinstance(answer.exception(timeout=0), FileNotFoundError)


def test_the_orphan_sweep_ends_a_flower_process_left_to_the_supervisor(make_supervisor):
    sup = make_supervisor()
    assert sup.subreaper, "Linux lets a process become a child subreaper (PR_SET_CHILD_SUBREAPER)"
    # A parent that starts a Flower-named process in a session of its own and exits at once: the
    # orphan is re-parented to this process (the subreaper), as a stopped SuperLink's
    # `flwr-serverapp` is to the supervisor.
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.1)', 'flwr-serverapp'],"
        " start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
    orphan = int(parent.stdout.strip())
    assert Path(f"/proc/{orphan}").exists()

    drive(sup, lambda: not Path(f"/proc/{orphan}").exists(), message="the orphan ended and reaped")


# ---------------------------------------------------------------- enrollments
@pytest.fixture
def listening_superlink() -> Iterator[NodeSession]:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        yield NodeSessionFactory(
            node=accounts_services.coordinator_node_ensure(),
            kind="superlink",
            status="running",
            supervisor_id=SupervisorHeartbeatFactory().id,  # a live supervisor's: reconcile leaves it alone
            runtime_config={"host": "127.0.0.1", "port": port, "insecure": True},
        )


def enrollment(**fields: object) -> NodeEnrollment:
    return NodeEnrollmentFactory(node=accounts_services.participant_node_ensure(), **fields)


def settled(row: NodeEnrollment, *, status: str) -> NodeEnrollment | None:
    row = NodeEnrollment.objects.get(pk=row.pk)
    return row if row.status == status and row.supervisor_id is None else None


def test_a_requested_key_is_registered_with_the_superlink_and_gets_flowers_node_id(
    make_supervisor, listening_superlink
):
    launcher = FakeChildLauncher(enrollment=flower_says({"success": True, "node-id": 7}))
    sup = make_supervisor(launcher)
    pending = enrollment(status="requested")

    done = drive(sup, lambda: settled(pending, status="registered"), message="the key registered")

    assert done.flower_node_id == "7"
    assert done.registered_at is not None
    assert launcher.of("enrollment") == [str(pending.pk)]


def test_a_key_flower_refuses_ends_failed_with_flowers_message(make_supervisor, listening_superlink):
    launcher = FakeChildLauncher(enrollment=flower_says({"success": False, "error-message": "key already in use"}))
    sup = make_supervisor(launcher)
    pending = enrollment(status="requested")

    done = drive(sup, lambda: settled(pending, status="failed"), message="the registration to fail")

    assert done.detail == "Flower: key already in use"


def test_a_failed_revocation_goes_back_to_the_queue_and_is_not_retried_at_once(make_supervisor, listening_superlink):
    launcher = FakeChildLauncher(enrollment=flower_says({"success": False, "error-message": "SuperLink busy"}))
    sup = make_supervisor(launcher)
    revoking = enrollment(status="revoke_requested", flower_node_id="7")

    done = drive(
        sup, lambda: NodeEnrollment.objects.filter(pk=revoking.pk, detail__startswith="Flower").first(), message="tried"
    )
    for _ in range(20):
        sup.step()

    assert done.status == "revoke_requested" and done.supervisor_id is None
    assert done.detail == "Flower: SuperLink busy"
    assert launcher.of("enrollment") == [str(revoking.pk)]  # retried only after ENROLL_RETRY_SECONDS


def test_an_enrollment_waits_while_no_superlink_listens(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    pending = enrollment(status="requested")

    for _ in range(20):
        sup.step()

    assert NodeEnrollment.objects.get(pk=pending.pk).supervisor_id is None
    assert launcher.of("enrollment") == []


# ---------------------------------------------------------------- scope and heartbeat
def test_nodes_recreated_under_a_running_supervisor_are_served(make_supervisor):
    sup = make_supervisor()
    old = accounts_services.participant_node_ensure()
    old.project.delete()  # the database emptied under the supervisor (cascades to its nodes)

    session = NodeSessionFactory(
        node=accounts_services.participant_node_ensure(),
        kind="supernode",
        status="requested",
        runtime_config={"fake_args": ["1", "0"]},
    )

    drive(sup, lambda: NodeSession.objects.get(pk=session.pk).supervisor_id == sup.id, message="claimed")
    assert session.node_id != old.pk


def test_a_supervisor_serves_every_project_by_default(make_supervisor):
    sup = make_supervisor()
    other = NodeFactory(project=ProjectFactory(), role="participant")
    session = NodeSessionFactory(
        node=other, kind="supernode", status="requested", runtime_config={"fake_args": ["1", "0"]}
    )

    drive(sup, lambda: NodeSession.objects.get(pk=session.pk).supervisor_id == sup.id, message="claimed")


def test_a_supervisor_scoped_to_the_configured_nodes_leaves_other_projects_alone(make_supervisor, settings):
    settings.SUPERVISOR_SCOPE = "configured"
    sup = make_supervisor()
    other = NodeSessionFactory(
        node=NodeFactory(project=ProjectFactory(), role="participant"),
        kind="supernode",
        status="requested",
        runtime_config={"fake_args": ["1", "0"]},
    )
    own = NodeSessionFactory(
        node=accounts_services.participant_node_ensure(),
        kind="supernode",
        status="requested",
        runtime_config={"fake_args": ["1", "0"]},
    )

    drive(sup, lambda: NodeSession.objects.get(pk=own.pk).supervisor_id == sup.id, message="own claimed")
    assert NodeSession.objects.get(pk=other.pk).status == "requested"


def test_the_heartbeat_is_written_at_start_and_kept_fresh(make_supervisor):
    sup = make_supervisor()
    first = selectors.supervisor_heartbeat_get(supervisor_id=sup.id)
    assert first is not None and first.pid == os.getpid()

    newer = drive(
        sup,
        lambda: (
            (row := selectors.supervisor_heartbeat_get(supervisor_id=sup.id)) and row.beat_at > first.beat_at and row
        ),
        message="a later beat",
    )

    assert selectors.supervisor_is_alive(sup.id)
    assert newer.hostname == socket.gethostname()


def test_shutdown_marks_the_supervisor_stopped(make_supervisor):
    sup = make_supervisor()

    sup.shutdown(timeout=5)

    assert not selectors.supervisor_is_alive(sup.id)
    assert not sup.table.reader.is_alive() and not sup.writer.is_alive()
    sup.shutdown(timeout=5)  # a second call (the fixture's) does nothing
