"""Carrying out the transitions declared in `orchestration.states`.

Each is one conditional update (`WHERE pk = ? AND status IN <sources>`) plus the row's status
event, in one transaction: of two racing writers exactly one changes the row, and subscribers
hear of every change that committed, once.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from orchestration.services.events import enrollment_event_emit, run_event_emit, session_event_emit
from orchestration.states import ENROLLMENT_TRANSITIONS, RUN_TRANSITIONS, SESSION_TRANSITIONS


@transaction.atomic
def session_transition(*, session_id: Any, name: str, where: dict[str, Any] | None = None, **changes: Any) -> bool:
    """Apply SESSION_TRANSITIONS[name] if the session is in one of its sources; True if it moved."""
    step = SESSION_TRANSITIONS[name]
    moved = NodeSession.objects.filter(pk=session_id, status__in=step.sources, **(where or {})).update(
        status=step.target, **changes
    )
    if moved:
        session_event_emit(session_id=session_id)
    return bool(moved)


@transaction.atomic
def run_transition(*, run_id: Any, name: str, where: dict[str, Any] | None = None, **changes: Any) -> bool:
    """Apply RUN_TRANSITIONS[name] if the run is in one of its sources; True if it moved."""
    step = RUN_TRANSITIONS[name]
    moved = FederatedRun.objects.filter(pk=run_id, status__in=step.sources, **(where or {})).update(
        status=step.target, **changes
    )
    if moved:
        run_event_emit(run_id=run_id)
    return bool(moved)


@transaction.atomic
def enrollment_transition(*, enrollment_id: Any, name: str, **changes: Any) -> bool:
    """Apply ENROLLMENT_TRANSITIONS[name] if the enrollment is in one of its sources; True if it moved."""
    step = ENROLLMENT_TRANSITIONS[name]
    moved = NodeEnrollment.objects.filter(pk=enrollment_id, status__in=step.sources).update(
        status=step.target, **changes
    )
    if moved:
        enrollment_event_emit(enrollment_id=enrollment_id)
    return bool(moved)
