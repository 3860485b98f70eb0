"""Whether the supervisor reaches its database: while it does not, every pass but the reaper's
waits (backing off), and the log and the heartbeat say so."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from orchestration.supervisor.common import DB_RETRY_FIRST, DB_RETRY_MAX

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outage:
    started_at: datetime
    ended_at: datetime | None  # None: still unreachable


class DatabaseState:
    """Loop thread only."""

    def __init__(self) -> None:
        self.outages = 0  # ended outages since the supervisor started
        self.last: Outage | None = None
        self._down_since: float | None = None  # monotonic
        self._retry_at = 0.0
        self._wait = DB_RETRY_FIRST
        self._attempts = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def due(self) -> bool:
        """Whether the next pass may try the database (always, while it answers)."""
        return self._down_since is None or time.monotonic() >= self._retry_at

    def unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._attempts += 1
        if self._down_since is None:
            self._down_since = now
            self._wait = DB_RETRY_FIRST
            self.last = Outage(started_at=timezone.now(), ended_at=None)
            logger.error(
                "database unreachable (%s): Flower's processes keep running and their lines are "
                "journalled; retrying with backoff up to %gs",
                _first_line(exc),
                DB_RETRY_MAX,
            )
        else:
            self._wait = min(self._wait * 2, DB_RETRY_MAX)
            if self._attempts % 10 == 0:
                logger.error("database still unreachable after %.0fs (%s)", now - self._down_since, _first_line(exc))
        self._retry_at = now + self._wait

    def reachable(self) -> None:
        if self._down_since is None:
            return
        seconds = time.monotonic() - self._down_since
        logger.warning("database reachable again after %.1fs (%d attempts)", seconds, self._attempts)
        assert self.last is not None
        self.last = Outage(started_at=self.last.started_at, ended_at=timezone.now())
        self.outages += 1
        self._down_since = None
        self._attempts = 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
