"""Supervisor heartbeats: how the web side knows a supervisor is alive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from orchestration.models import (
    SupervisorHeartbeat,
)


def supervisor_heartbeat(
    *,
    supervisor_id: Any,
    hostname: str,
    pid: int,
    started_at: datetime,
    database_outages: int = 0,
    last_outage: tuple[datetime, datetime | None] | None = None,
) -> None:
    now = timezone.now()
    outage = {
        "database_outages": database_outages,
        "last_database_outage_started_at": last_outage[0] if last_outage else None,
        "last_database_outage_ended_at": last_outage[1] if last_outage else None,
    }
    updated = SupervisorHeartbeat.objects.filter(pk=supervisor_id).update(beat_at=now, **outage)
    if not updated:
        SupervisorHeartbeat.objects.create(
            id=supervisor_id, hostname=hostname, pid=pid, started_at=started_at, beat_at=now, **outage
        )


def supervisor_mark_stopped(*, supervisor_id: Any) -> None:
    SupervisorHeartbeat.objects.filter(pk=supervisor_id).update(stopped_at=timezone.now())
