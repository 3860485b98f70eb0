"""Project events: the gap-free, append-only feed of status changes that websockets follow."""

from __future__ import annotations

from datetime import datetime
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def session_event_payload(session: NodeSession) -> dict[str, Any]:
    return {
        "session_id": str(session.pk),
        "node_id": str(session.node_id),
        "kind": session.kind,
        "status": session.status,
        "pid": session.pid,
        "exit_code": session.exit_code,
        "signal": session.signal,
        "started_at": _iso(session.started_at),
        "ended_at": _iso(session.ended_at),
        "status_detail": (session.status_detail or "").splitlines()[0][:500] if session.status_detail else "",
    }


def run_event_payload(run: FederatedRun) -> dict[str, Any]:
    return {
        "run_id": str(run.pk),
        "flower_run_id": run.flower_run_id or None,
        "status": run.status,
        "pid": run.pid,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "status_detail": (run.status_detail or "").splitlines()[0][:500] if run.status_detail else "",
    }


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
    event_emit(project_id=session.node.project_id, type="session.status", payload=session_event_payload(session))


def run_event_emit(*, run_id: Any) -> None:
    run = FederatedRun.objects.get(pk=run_id)
    event_emit(project_id=run.project_id, type="run.status", payload=run_event_payload(run))


def enrollment_payload(enrollment: NodeEnrollment) -> dict[str, Any]:
    return {
        "enrollment_id": str(enrollment.pk),
        "node_id": str(enrollment.node_id),
        "status": enrollment.status,
        "flower_node_id": enrollment.flower_node_id or None,
        "detail": enrollment.detail[:500],
    }


def enrollment_event_emit(*, enrollment_id: Any) -> None:
    enrollment = NodeEnrollment.objects.select_related("node").get(pk=enrollment_id)
    event_emit(project_id=enrollment.node.project_id, type="node.enrollment", payload=enrollment_payload(enrollment))
