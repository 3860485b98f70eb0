"""The heartbeat: `/health` and every start request call a supervisor alive while it beats."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from django.utils import timezone

from orchestration import services
from orchestration.supervisor.common import HEARTBEAT_INTERVAL
from orchestration.supervisor.database import DatabaseState


class Heartbeat:
    def __init__(self, *, supervisor_id: Any, hostname: str, started_at: datetime, database: DatabaseState) -> None:
        self.supervisor_id = supervisor_id
        self.hostname = hostname
        self.started_at = started_at
        self.database = database
        self._last_beat = 0.0  # loop thread only

    def step(self) -> bool:
        """Beat when one is due; beating is not work (the loop may still sleep after it)."""
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_INTERVAL:
            self.beat()
        return False

    def busy(self) -> bool:
        return False

    def beat(self) -> None:
        last = self.database.last
        services.supervisor_heartbeat(
            supervisor_id=self.supervisor_id,
            hostname=self.hostname,
            pid=os.getpid(),
            started_at=self.started_at,
            # The beat that reaches the database after an outage records it as ended.
            database_outages=self.database.outages + (1 if self.database.down else 0),
            last_outage=(last.started_at, last.ended_at or timezone.now()) if last else None,
        )
        self._last_beat = time.monotonic()
