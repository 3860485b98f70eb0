"""A session's restart policy (never / on-failure / always): a process that exits by itself comes
back after a back-off, one that someone stopped does not. Real child processes (the fake Flower
program), real rows."""

from __future__ import annotations

import pytest

from accounts import services as accounts_services
from orchestration import services
from orchestration.models import LogLine, NodeSession
from orchestration.supervisor.restarts import MAX_QUICK_RESTARTS, RESTART_MAX, GiveUp, Restart, Restarts
from tests.factories import NodeSessionFactory
from tests.fake_launcher import FakeChildLauncher
from tests.supervisor_kit import drive, session_ended

pytestmark = pytest.mark.django_db(transaction=True)


def request_fake(policy: str, *args: str) -> NodeSession:
    node = accounts_services.participant_node_ensure()
    config = {"fake_args": list(args), "restart_policy": policy}
    return NodeSessionFactory(node=node, kind="supernode", status="requested", runtime_config=config)


def started(launcher: FakeChildLauncher, session: NodeSession, times: int):  # noqa: ANN201
    return lambda: (
        NodeSession.objects.filter(pk=session.pk, status="running").first()
        if (launcher.of("session").count(str(session.pk)) >= times)
        else None
    )


def test_on_failure_restarts_a_process_that_failed_and_says_so_in_its_row_and_log(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    session = request_fake("on-failure", "1", "3")
    first = drive(sup, started(launcher, session, 1), message="first start")

    restarting = drive(
        sup,
        lambda: NodeSession.objects.filter(pk=session.pk, status="starting", pid__isnull=True).first(),
        message="the row waiting for its restart",
    )
    assert restarting.status_detail.startswith("exited with code 3: restarting in 1 s (restart 1, policy on-failure)")
    assert restarting.exit_code == 3

    again = drive(sup, started(launcher, session, 2), message="the restart")
    assert again.pid != first.pid
    texts = list(LogLine.objects.filter(session=session).order_by("seq").values_list("text", flat=True))
    assert "[fedml] exited with code 3: restarting in 1 s (restart 1, policy on-failure)" in texts
    seqs = list(LogLine.objects.filter(session=session, stream="stdout").order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one gap-free log across both processes


def test_a_stop_during_the_back_off_ends_the_session_and_nothing_starts_again(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    session = request_fake("always", "0", "1")
    drive(
        sup,
        lambda: NodeSession.objects.filter(pk=session.pk, status="starting", pid__isnull=True, exit_code=1).first(),
        message="waiting for the restart",
    )

    services.session_request_stop(session=NodeSession.objects.get(pk=session.pk))
    ended = drive(sup, session_ended(session), message="the stop")

    assert ended.status == "stopped"
    assert sup.sessions.restarts.waiting() == []
    assert launcher.of("session") == [str(session.pk)]


@pytest.mark.parametrize(
    ("policy", "exit_code", "ends"),
    [("never", "3", "failed"), ("on-failure", "0", "exited"), ("never", "0", "exited")],
)
def test_a_policy_that_does_not_apply_ends_the_session_as_before(make_supervisor, policy, exit_code, ends):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    session = request_fake(policy, "1", exit_code)

    ended = drive(sup, session_ended(session), message="the end")

    assert ended.status == ends
    assert launcher.of("session") == [str(session.pk)]


def test_a_process_fedml_stopped_is_never_restarted(make_supervisor):
    launcher = FakeChildLauncher()
    sup = make_supervisor(launcher)
    session = request_fake("always", "1", "0", "--hang")
    drive(sup, started(launcher, session, 1), message="running")

    services.session_request_stop(session=NodeSession.objects.get(pk=session.pk))
    ended = drive(sup, session_ended(session), message="the stop")

    assert ended.status == "stopped"
    assert launcher.of("session") == [str(session.pk)]


def test_the_back_off_doubles_to_its_cap_and_a_crash_loop_is_given_up():
    restarts = Restarts()
    delays = []
    for _ in range(MAX_QUICK_RESTARTS):
        decision = restarts.decide(session_id="s", policy="on-failure", exit_code=1, signal_sent=False, ran_for=0.5)
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
    assert delays == [1, 2, 4, 8, 16, 32, RESTART_MAX, RESTART_MAX, RESTART_MAX, RESTART_MAX]

    gave_up = restarts.decide(session_id="s", policy="on-failure", exit_code=1, signal_sent=False, ran_for=0.5)
    assert isinstance(gave_up, GiveUp) and "10 restarts in a row" in gave_up.reason
    assert restarts.waiting() == []


def test_a_process_that_ran_long_enough_starts_the_back_off_afresh():
    restarts = Restarts()
    for _ in range(3):
        restarts.decide(session_id="s", policy="always", exit_code=0, signal_sent=False, ran_for=1)
    decision = restarts.decide(session_id="s", policy="always", exit_code=0, signal_sent=False, ran_for=3600)
    assert decision == Restart(delay=1, number=4)


def test_a_signal_fedml_sent_or_a_clean_exit_under_on_failure_is_not_restarted():
    restarts = Restarts()
    assert restarts.decide(session_id="s", policy="always", exit_code=None, signal_sent=True, ran_for=1) is None
    assert restarts.decide(session_id="s", policy="on-failure", exit_code=0, signal_sent=False, ran_for=1) is None
    assert restarts.decide(session_id="s", policy="on-failure", exit_code=None, signal_sent=False, ran_for=1)
