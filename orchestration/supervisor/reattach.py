"""Re-attaching to a run whose `flwr run` died of a signal FedML did not send.

Flower still runs the run on its SuperLink: `flwr log <id> --stream` follows it from there, and
the lines of its replay that FedML saved already are skipped (`flower.StreamedLines`).
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from pathlib import Path

from accounts.permissions import EVERY_PROJECT
from orchestration import flower, procs, selectors, services
from orchestration.logpipe import Owner
from orchestration.states import RunStatus
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.common import Child, ChildContext, ChildRole, ExitReport, Owed
from orchestration.supervisor.launcher import RunControl

logger = logging.getLogger(__name__)

MAX_REATTACH = 3  # `flwr log` processes started for one run, at most


class Reattacher:
    def __init__(self, *, table: ChildTable, owed: Owed, on_exit: Callable[[ExitReport], None]) -> None:
        self.table = table
        self.owed = owed
        self.on_exit = on_exit
        self._count: dict[str, int] = {}  # run id -> how often `flwr log` replaced a dead process

    def forget(self, run_id: str) -> None:
        self._count.pop(run_id, None)

    def follow(self, run_id: str, event: ExitReport, *, stopping: bool) -> Child | None:
        """The `flwr log` now following the run, or None: the exit ends the process as usual.

        Only for a death by a signal FedML did not send (the OOM killer, an operator, a crash)
        while the run is running on Flower's side and nobody asked it to stop."""
        child = event.child
        if (
            stopping
            or child.exit_signal is None
            or child.term_sent_at is not None
            or child.kill_sent_at is not None
            or self._count.get(run_id, 0) >= MAX_REATTACH
        ):
            return None
        run = selectors.run_get(run_id=run_id, projects=EVERY_PROJECT)
        if run is None or run.status != RunStatus.RUNNING or not run.flower_run_id or run.stop_requested_at:
            return None
        before = child.context.streamed
        saved = before.saved if before is not None else array("q")
        owner = Owner("run", run.pk)
        context = ChildContext(
            role=ChildRole.RUN,
            subject_id=run_id,
            source="run",
            owner=owner,
            on_exit=self.on_exit,
            streamed=flower.StreamedLines(saved=saved),
        )
        said = (
            f"`flwr run` {child.describe_exit()}, a signal FedML did not send, while Flower runs the run: "
            f"following it with `flwr log --stream` (where it repeats the {len(saved)} lines already saved, "
            "they are skipped)"
        )
        writer = self.table.writer
        writer.open(owner, Path(run.log_path) if run.log_path else None)
        self.table.system(owner, "run", f"[fedml] {said}")
        try:
            command = self.table.launcher.run_control_command(run, RunControl.LOG)
            new = self.table.spawn(command, label=f"log {run.pk}", context=context)
        except (OSError, KeyError, ValueError) as exc:
            logger.exception("could not re-attach to run %s", run_id)
            self.table.system(owner, "run", f"[fedml] could not start `flwr log`: {exc}")
            writer.close_owner(owner)
            return None
        self._count[run_id] = self._count.get(run_id, 0) + 1
        identity = procs.process_identity(new.pid)
        self.owed.do(
            f"record run {run_id} as re-attached",
            lambda: services.run_mark_reattached(
                run_id=run.pk,
                exit_code=child.exit_code,
                signal=child.exit_signal,
                pid=new.pid,
                identity=identity,
                detail=said,
            ),
        )
        return new
