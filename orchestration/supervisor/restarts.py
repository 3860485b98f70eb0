"""Restart policies of sessions, as process managers have them.

`on-failure` restarts a process that exited by itself with an error (a code other than 0, or a
signal FedML did not send), `always` one that exited by itself at all; neither restarts a process
someone asked to stop, nor any during shutdown. Restarts back off (1 s, doubling to 60 s); a
process that ran for STABLE_AFTER seconds starts the back-off afresh, and after MAX_QUICK_RESTARTS
in a row that each died sooner the session fails for good (a crash loop helps nobody).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from orchestration.runtime_config import RESTART_NEVER

RESTART_FIRST = 1.0
RESTART_MAX = 60.0
STABLE_AFTER = 60.0
MAX_QUICK_RESTARTS = 10


@dataclass(frozen=True)
class Restart:
    delay: float
    number: int  # how many restarts of this session so far, this one included


@dataclass(frozen=True)
class GiveUp:
    reason: str


@dataclass
class _History:
    restarts: int = 0
    quick: int = 0  # restarts in a row whose process ran less than STABLE_AFTER


class Restarts:
    """Loop thread only: which sessions wait to be started again, and when."""

    def __init__(self) -> None:
        self._history: dict[str, _History] = {}
        self._due: dict[str, float] = {}  # session id -> monotonic time to start it again

    def decide(
        self, *, session_id: str, policy: str, exit_code: int | None, signal_sent: bool, ran_for: float
    ) -> Restart | GiveUp | None:
        """After a process exited that nobody asked to stop: None when its policy says it stays down."""
        failed = exit_code != 0
        if policy == RESTART_NEVER or signal_sent or (policy == "on-failure" and not failed):
            self.forget(session_id)
            return None
        history = self._history.setdefault(session_id, _History())
        history.quick = history.quick + 1 if ran_for < STABLE_AFTER else 0
        if history.quick > MAX_QUICK_RESTARTS:
            self.forget(session_id)
            return GiveUp(
                f"gave up restarting (policy {policy}): {MAX_QUICK_RESTARTS} restarts in a row each ran less than "
                f"{STABLE_AFTER:.0f} s"
            )
        history.restarts += 1
        delay = min(RESTART_MAX, RESTART_FIRST * 2 ** max(0, history.quick - 1))
        self._due[session_id] = time.monotonic() + delay
        return Restart(delay=delay, number=history.restarts)

    def due(self) -> list[str]:
        """Sessions whose back-off is over (each returned once)."""
        now = time.monotonic()
        ready = [session_id for session_id, at in self._due.items() if at <= now]
        for session_id in ready:
            del self._due[session_id]
        return ready

    def waiting(self) -> list[str]:
        return list(self._due)

    def cancel(self, session_id: str) -> None:
        self._due.pop(session_id, None)

    def forget(self, session_id: str) -> None:
        self._due.pop(session_id, None)
        self._history.pop(session_id, None)

    def next_due_in(self) -> float | None:
        if not self._due:
            return None
        return max(0.0, min(self._due.values()) - time.monotonic())
