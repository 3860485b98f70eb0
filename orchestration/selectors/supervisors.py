"""Which supervisors are alive (their heartbeats), as /health and the start requests see it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from orchestration.models import (
    SupervisorHeartbeat,
)


def supervisors_alive() -> QuerySet[SupervisorHeartbeat]:
    cutoff = timezone.now() - timedelta(seconds=settings.SUPERVISOR_STALE_SECONDS)
    return SupervisorHeartbeat.objects.filter(beat_at__gte=cutoff, stopped_at__isnull=True)


def supervisor_is_alive(supervisor_id: Any) -> bool:
    return supervisor_id is not None and supervisors_alive().filter(pk=supervisor_id).exists()


def supervisor_status() -> dict[str, Any]:
    alive = list(supervisors_alive().order_by("-beat_at")[:5])
    newest = alive[0] if alive else SupervisorHeartbeat.objects.order_by("-beat_at").first()
    return {
        "supervisor_alive": bool(alive),
        "supervisor_count": len(alive),
        "supervisor_last_heartbeat": newest.beat_at.isoformat() if newest else None,
        "supervisor_hint": None
        if alive
        else "No supervisor is running: start one with `python manage.py runsupervisor`.",
    }


def supervisor_heartbeat_get(*, supervisor_id: Any) -> SupervisorHeartbeat | None:
    return SupervisorHeartbeat.objects.filter(pk=supervisor_id).first()


def supervisor_ids_alive() -> set[Any]:
    return set(supervisors_alive().values_list("id", flat=True))
