"""Every transition of every record kind, from every status: it moves the row exactly when the
table in orchestration/states.py says it may, and a move (only a move) emits one event."""

from __future__ import annotations

from typing import Any

import pytest

from orchestration import services
from orchestration.models import FederatedRun, NodeEnrollment, NodeSession, ProjectEvent
from orchestration.states import (
    ENROLLMENT_TRANSITIONS,
    RUN_TRANSITIONS,
    SESSION_TRANSITIONS,
    EnrollmentStatus,
    RunStatus,
    SessionStatus,
    legal_targets,
)
from tests.factories import FederatedRunFactory, NodeEnrollmentFactory, NodeSessionFactory

pytestmark = pytest.mark.django_db

CASES = (
    [("session", name, status) for name in SESSION_TRANSITIONS for status in SessionStatus]
    + [("run", name, status) for name in RUN_TRANSITIONS for status in RunStatus]
    + [("enrollment", name, status) for name in ENROLLMENT_TRANSITIONS for status in EnrollmentStatus]
)


def _make(kind: str, status: str) -> Any:
    if kind == "session":
        return NodeSessionFactory(status=status)
    if kind == "run":
        return FederatedRunFactory(status=status)
    return NodeEnrollmentFactory(status=status)


def _apply(kind: str, pk: Any, name: str) -> bool:
    if kind == "session":
        return services.session_transition(session_id=pk, name=name)
    if kind == "run":
        return services.run_transition(run_id=pk, name=name)
    return services.enrollment_transition(enrollment_id=pk, name=name)


def _table(kind: str) -> dict[str, Any]:
    return {"session": SESSION_TRANSITIONS, "run": RUN_TRANSITIONS, "enrollment": ENROLLMENT_TRANSITIONS}[kind]


def _model(kind: str) -> Any:
    return {"session": NodeSession, "run": FederatedRun, "enrollment": NodeEnrollment}[kind]


@pytest.mark.parametrize(("kind", "name", "status"), CASES, ids=[f"{k}-{n}-from-{s}" for k, n, s in CASES])
def test_a_transition_moves_the_row_only_from_its_sources_and_emits_an_event_only_when_it_moves(kind, name, status):
    row = _make(kind, status)
    step = _table(kind)[name]
    events_before = ProjectEvent.objects.count()

    moved = _apply(kind, row.pk, name)

    now = _model(kind).objects.get(pk=row.pk).status
    assert moved is (status in step.sources)
    assert now == (step.target if moved else status)
    assert ProjectEvent.objects.count() == events_before + (1 if moved else 0)


def test_of_two_racing_claims_exactly_one_wins():
    session = NodeSessionFactory(status=SessionStatus.REQUESTED)

    first = services.session_claim(session_id=session.pk, supervisor_id="00000000-0000-0000-0000-000000000001")
    second = services.session_claim(session_id=session.pk, supervisor_id="00000000-0000-0000-0000-000000000002")

    session.refresh_from_db()
    assert (first, second) == (True, False)
    assert str(session.supervisor_id) == "00000000-0000-0000-0000-000000000001"


def test_an_ended_row_never_moves_again():
    for status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED):
        assert legal_targets(RUN_TRANSITIONS, status) == set()
    for status in (SessionStatus.STOPPED, SessionStatus.EXITED, SessionStatus.FAILED, SessionStatus.LOST):
        assert legal_targets(SESSION_TRANSITIONS, status) == set()
    for status in (EnrollmentStatus.REVOKED, EnrollmentStatus.FAILED):
        assert legal_targets(ENROLLMENT_TRANSITIONS, status) == set()


def test_every_live_status_can_still_end():
    for status in (RunStatus.REQUESTED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING):
        assert legal_targets(RUN_TRANSITIONS, status) & {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED}
    for status in (SessionStatus.REQUESTED, SessionStatus.STARTING, SessionStatus.RUNNING, SessionStatus.STOPPING):
        assert SessionStatus.LOST in legal_targets(SESSION_TRANSITIONS, status)


def test_a_transition_event_carries_the_rows_new_status():
    run = FederatedRunFactory(status=RunStatus.RUNNING)

    services.run_mark_ended(run_id=run.pk, status=RunStatus.FAILED, detail="Flower: finished:failed\nmore")

    event = ProjectEvent.objects.filter(project=run.project).order_by("-seq").first()
    assert event is not None and event.type == "run.status"
    assert event.payload["status"] == "failed"
    assert event.payload["status_detail"] == "Flower: finished:failed"


def test_session_mark_ended_chooses_stopped_exited_or_failed():
    asked, clean, crashed = (NodeSessionFactory(status=SessionStatus.RUNNING) for _ in range(3))

    services.session_mark_ended(session_id=asked.pk, exit_code=None, signal=15, stop_requested=True)
    services.session_mark_ended(session_id=clean.pk, exit_code=0, signal=None, stop_requested=False)
    services.session_mark_ended(session_id=crashed.pk, exit_code=1, signal=None, stop_requested=False)

    statuses = [NodeSession.objects.get(pk=s.pk).status for s in (asked, clean, crashed)]
    assert statuses == [SessionStatus.STOPPED, SessionStatus.EXITED, SessionStatus.FAILED]


def test_run_note_speaks_only_for_a_claimed_run_not_yet_spawned():
    waiting = FederatedRunFactory(status=RunStatus.STARTING)
    spawned = FederatedRunFactory(status=RunStatus.STARTING, pid=1234)

    assert services.run_note(run_id=waiting.pk, detail="waiting for the SuperLink") is True
    assert services.run_note(run_id=spawned.pk, detail="waiting for the SuperLink") is False
    assert FederatedRun.objects.get(pk=spawned.pk).status_detail == ""
