"""Project events: the gap-free, append-only feed of status changes that websockets follow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from orchestration import doorbell
from orchestration.models import (
    FederatedRun,
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


def status_event_emit(model: type[NodeSession] | type[FederatedRun], pk: Any) -> None:
    if model is NodeSession:
        session = NodeSession.objects.select_related("node").get(pk=pk)
        event_emit(project_id=session.node.project_id, type="session.status", payload=session_event_payload(session))
    else:
        run = FederatedRun.objects.get(pk=pk)
        event_emit(project_id=run.project_id, type="run.status", payload=run_event_payload(run))


def status_event_emit_if(model: type[NodeSession] | type[FederatedRun], pk: Any, changed: int) -> bool:
    """After a conditional update in the same transaction: record the change as an event."""
    if changed:
        status_event_emit(model, pk)
    return bool(changed)


@transaction.atomic
def withdraw_unclaimed(model: type[NodeSession] | type[FederatedRun], pk: Any, requested: str, stopped: str) -> bool:
    changed = model.objects.filter(pk=pk, status=requested).update(
        status=stopped, ended_at=timezone.now(), status_detail="withdrawn before a supervisor started it"
    )
    return status_event_emit_if(model, pk, changed)
