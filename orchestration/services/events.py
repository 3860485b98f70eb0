"""Project events: the gap-free, append-only feed of status changes that websockets follow."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F

from orchestration import doorbell
from orchestration.models import (
    FederatedRun,
    NodeEnrollment,
    NodeSession,
    Project,
    ProjectEvent,
)
from orchestration.serializers import enrollment_event_output, run_event_output, session_event_output


def event_emit(*, project_id: Any, type: str, payload: dict[str, Any]) -> ProjectEvent:
    """Append a project event with the next gap-free seq; call inside the writing transaction.

    The UPDATE takes the project row's lock until commit, so concurrent writers commit in seq order.
    """
    with transaction.atomic():
        Project.objects.filter(pk=project_id).update(event_seq=F("event_seq") + 1)
        seq = Project.objects.filter(pk=project_id).values_list("event_seq", flat=True).get()
        event = ProjectEvent.objects.create(project_id=project_id, seq=seq, type=type, payload=payload)
    transaction.on_commit(lambda: doorbell.ring(doorbell.events_group(project_id)))
    return event


def session_event_emit(*, session_id: Any) -> None:
    session = NodeSession.objects.select_related("node").get(pk=session_id)
    event_emit(project_id=session.node.project_id, type="session.status", payload=session_event_output(session))


def run_event_emit(*, run_id: Any) -> None:
    run = FederatedRun.objects.get(pk=run_id)
    event_emit(project_id=run.project_id, type="run.status", payload=run_event_output(run))


def enrollment_event_emit(*, enrollment_id: Any) -> None:
    enrollment = NodeEnrollment.objects.select_related("node").get(pk=enrollment_id)
    event_emit(
        project_id=enrollment.node.project_id, type="node.enrollment", payload=enrollment_event_output(enrollment)
    )
