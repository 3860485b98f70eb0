"""Asking Flower about a run that `flwr run` started: stop it, read its status.

Today through Flower's CLI (`flwr stop`, `flwr ls --format json`), each a short child process
whose output is the answer. This is the one place that talks to a SuperLink about a run: a
client of Flower's Control API replaces this class, and nothing else changes.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from pathlib import Path

from orchestration import flower
from orchestration.logpipe import Owner
from orchestration.models import FederatedRun
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.launcher import RunControl

logger = logging.getLogger(__name__)


class FlowerControl:
    """Callable from any thread; each answer is a future the loop resolves (see `ChildTable.submit`)."""

    def __init__(self, *, table: ChildTable) -> None:
        self.table = table

    def stop(self, run: FederatedRun) -> Future[list[str]]:
        """Stop the run through Flower's own control path; the command's output goes to the run's log."""
        # Into the run's file as well, when `flwr run` (which held it open) has exited already.
        log_path = Path(run.log_path) if run.log_path else None
        return self._submit(run, RunControl.STOP, owner=Owner("run", run.pk), log_path=log_path)

    def status(self, run: FederatedRun) -> Future[flower.FlowerRunStatus | None]:
        """The run's status as Flower reports it; None when Flower said nothing usable."""
        answer: Future[flower.FlowerRunStatus | None] = Future()
        flower_run_id = run.flower_run_id

        def parse(done: Future[list[str]]) -> None:
            try:
                answer.set_result(flower.parse_ls_json("\n".join(done.result()), flower_run_id=flower_run_id))
            except Exception as exc:  # the command could not start: the caller decides
                answer.set_exception(exc)

        self._submit(run, RunControl.LS, owner=None).add_done_callback(parse)
        return answer

    def _submit(
        self, run: FederatedRun, action: RunControl, *, owner: Owner | None, log_path: Path | None = None
    ) -> Future[list[str]]:
        try:
            command = self.table.launcher.run_control_command(run, action)
        except (OSError, ValueError) as exc:
            logger.exception("could not prepare `flwr %s` for run %s", action.value, run.pk)
            failed: Future[list[str]] = Future()
            failed.set_exception(exc)
            return failed
        return self.table.submit(
            command, label=f"{action.value} {run.pk}", subject_id=str(run.pk), owner=owner, log_path=log_path
        )
