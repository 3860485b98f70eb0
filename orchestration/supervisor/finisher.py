"""Finishing a run once `flwr run` exited: the outcome is Flower's, not the exit code's.

`flwr run` exits 0 whatever happened to the run, so the finisher asks Flower (every
STATUS_POLL_INTERVAL) until the run is `finished:completed|failed|stopped` and ends the row
with that, Flower's status details and the run's last log lines.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass

from accounts.permissions import EVERY_PROJECT
from orchestration import flower, selectors, services
from orchestration.models import FederatedRun
from orchestration.states import RUN_CLAIMED_STATUSES, RunStatus, SessionStatus
from orchestration.supervisor.common import STATUS_POLL_INTERVAL, ExitReport, clear_current_run_id, log_unless_outage
from orchestration.supervisor.flower_control import FlowerControl
from orchestration.supervisor.telemetry import Telemetry

logger = logging.getLogger(__name__)

MAX_STATUS_FAILURES = 5

Outcome = tuple[RunStatus, str]


@dataclass
class _Finishing:
    run_id: str
    exit: ExitReport
    pending: Future[flower.FlowerRunStatus | None] | None = None  # the `flwr ls` under way
    next_ask_at: float = 0.0
    failures: int = 0  # consecutive answers without a status
    last_error: str = ""


class _Waiting:
    """Not decided yet: ask again later."""


WAITING = _Waiting()


class RunFinisher:
    def __init__(self, *, control: FlowerControl, telemetry: Telemetry) -> None:
        self.control = control
        self.telemetry = telemetry
        self._finishing: dict[str, _Finishing] = {}  # loop thread only

    def begin(self, run_id: str, exit: ExitReport) -> None:
        """`flwr run` of this run exited (its last line is saved): find out how the run ended."""
        self._finishing[run_id] = _Finishing(run_id=run_id, exit=exit)

    def step(self) -> bool:
        did = False
        for item in list(self._finishing.values()):
            outcome: Outcome | None | _Waiting
            try:
                outcome = self._advance(item)
            except Exception as exc:
                log_unless_outage(exc, "finishing run %s failed", item.run_id)
                outcome = (RunStatus.FAILED, "FedML failed while reading the run's outcome")
            if outcome is WAITING:
                continue
            assert not isinstance(outcome, _Waiting)
            gap = self._log_gap(item)
            if outcome is not None and gap:
                outcome = (outcome[0], outcome[1] + gap)
            self._end(item.run_id, outcome)
            did = True
        return did

    def busy(self) -> bool:
        return bool(self._finishing)

    def run_ids(self) -> list[str]:
        return list(self._finishing)

    def _advance(self, item: _Finishing) -> Outcome | None | _Waiting:
        """The run's terminal (status, detail); None when something else already ended it."""
        if item.pending is not None and not item.pending.done():
            return WAITING
        if item.pending is None and time.monotonic() < item.next_ask_at:
            return WAITING
        run = selectors.run_get(run_id=item.run_id, projects=EVERY_PROJECT)
        if run is None:
            return None
        last = "\n".join(item.exit.last_lines)
        if not run.flower_run_id:
            status = RunStatus.STOPPED if run.stop_requested_at else RunStatus.FAILED
            child = item.exit.child
            return status, f"`flwr run` {child.describe_exit()} before Flower accepted the run. Last lines:\n{last}"
        if item.pending is None:
            item.pending = self.control.status(run)
            return WAITING
        result, item.pending = item.pending.result(), None
        if result is not None and result.finished:
            return self._flower_outcome(run, result, last)
        if result is None:
            item.failures += 1
            item.last_error = "could not read the run's status from the SuperLink"
        else:
            item.failures = 0
        superlink = (
            selectors.session_get(session_id=run.coordinator_session_id, projects=EVERY_PROJECT)
            if run.coordinator_session_id
            else None
        )
        superlink_alive = superlink is not None and superlink.status == SessionStatus.RUNNING
        if item.failures >= MAX_STATUS_FAILURES or (not superlink_alive and item.failures >= 1):
            return RunStatus.FAILED, f"{item.last_error}. Last lines:\n{last}"
        if run.status not in RUN_CLAIMED_STATUSES:
            return None
        item.next_ask_at = time.monotonic() + STATUS_POLL_INTERVAL
        return WAITING

    def _flower_outcome(self, run: FederatedRun, result: flower.FlowerRunStatus, last: str) -> Outcome:
        status, detail = flower_outcome(result)
        if run.stop_requested_at and status != RunStatus.COMPLETED:
            status = RunStatus.STOPPED
        if status != RunStatus.COMPLETED:
            detail += f". Last lines:\n{last}"
        return status, detail

    @staticmethod
    def _log_gap(item: _Finishing) -> str:
        """What FedML's log of the run may miss: the `flwr log` following it ended before the run."""
        child = item.exit.child
        streamed = child.context.streamed
        if streamed is None or not streamed.replay or (child.exit_code == 0 and child.exit_signal is None):
            return ""
        return (
            f" FedML's log of the run may be incomplete: the `flwr log` following it {child.describe_exit()}"
            " before the run ended."
        )

    def _end(self, run_id: str, outcome: Outcome | None) -> None:
        """An outage keeps the run finishing (the outcome is decided again on the next pass)."""
        # Cleared before the terminal status is written: whoever sees the run ended
        # also sees the app's pyproject back to no current run.
        clear_current_run_id(run_id)
        try:
            # The ServerApp has exited: its last records (the final round, the model) are on
            # disk and are read before the row is final, after which none is accepted.
            cause = None
            try:
                cause = self.telemetry.finish(run_id)
            except Exception as exc:  # the run ends all the same
                log_unless_outage(exc, "could not read the last telemetry of run %s", run_id)
            if outcome is not None and cause and outcome[0] == RunStatus.FAILED:
                outcome = (outcome[0], f"{cause}. {outcome[1]}")  # the ServerApp said why it gave up
            if outcome is not None:
                services.run_mark_ended(run_id=run_id, status=outcome[0], detail=outcome[1])
        except Exception as exc:
            log_unless_outage(exc, "could not record the end of run %s", run_id)
        self._finishing.pop(run_id, None)


def flower_outcome(result: flower.FlowerRunStatus) -> Outcome:
    """Flower's finished:<sub-status> as FedML's run status, and what Flower said."""
    # Flower's sub-statuses, not FedML's: anything but these two is a failure.
    status = {"completed": RunStatus.COMPLETED, "stopped": RunStatus.STOPPED}.get(result.sub_status, RunStatus.FAILED)
    said = f"Flower: finished:{result.sub_status}" + (f" ({result.details})" if result.details else "")
    return status, said
