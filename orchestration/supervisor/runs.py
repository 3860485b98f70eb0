"""Run lifecycle up to the end of `flwr run`: claim a requested run, wait for its SuperLink to
listen, spawn `flwr run`, note Flower's run id, stop it (through Flower first), and hand its
exit to the finisher."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.permissions import EVERY_PROJECT
from orchestration import flower, procs, selectors, services
from orchestration.logpipe import Line, Owner
from orchestration.models import FederatedRun, LogStream
from orchestration.runtime_config import superlink_config
from orchestration.states import RunStatus
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.common import (
    RUN_STOP_GRACE,
    SUPERLINK_READY_TIMEOUT,
    Child,
    ChildContext,
    ChildRole,
    ExitReport,
    Inbox,
    Owed,
    clear_current_run_id,
    log_unless_outage,
    project_file_suffix,
    rotate_log,
    shares_app_config,
    superlink_listening,
)
from orchestration.supervisor.finisher import RunFinisher
from orchestration.supervisor.flower_control import FlowerControl
from orchestration.supervisor.reattach import Reattacher
from orchestration.supervisor.scope import Scope
from orchestration.supervisor.telemetry import Telemetry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowerAccepted:
    """`flwr run` printed Flower's run id: Flower accepted the run."""

    run_id: str
    flower_run_id: str


class RunWorker:
    def __init__(
        self,
        *,
        supervisor_id: Any,
        scope: Scope,
        table: ChildTable,
        control: FlowerControl,
        finisher: RunFinisher,
        telemetry: Telemetry,
        owed: Owed,
        wake: threading.Event,
    ) -> None:
        self.owed = owed
        self.supervisor_id = supervisor_id
        self.scope = scope
        self.table = table
        self.control = control
        self.finisher = finisher
        self.telemetry = telemetry
        # Filled by the log writer's thread, in the order the run's lines were saved: Flower's
        # run id always arrives before the exit of the `flwr run` that printed it.
        self.events: Inbox[FlowerAccepted | ExitReport] = Inbox(wake)
        self.accepting = True  # no new claims once the supervisor shuts down
        self._announced: set[str] = set()  # runs whose Flower run id was seen (log writer's thread)
        # Loop thread only.
        self._awaiting_superlink: dict[str, float] = {}  # run id -> when it was claimed
        self._children: dict[str, Child] = {}  # run id -> its `flwr run`, until it exits
        self._stop_sent: dict[str, float] = {}  # run id -> when its stop was sent
        self.reattacher = Reattacher(table=table, owed=owed, on_exit=self.events.put)

    def step(self) -> bool:
        did = self._handle_events()
        if self.accepting:
            did |= self._claim()
        did |= self._spawn_runs_whose_superlink_listens()
        did |= self._handle_stop_requests()
        self._terminate_after_grace()
        return did

    def busy(self) -> bool:
        return bool(self._awaiting_superlink or self._children)

    def begin_shutdown(self) -> None:
        """End runs still waiting for their SuperLink; ask the others (running, or finishing) to stop."""
        self.accepting = False
        for run_id in list(self._awaiting_superlink):
            self._awaiting_superlink.pop(run_id)
            services.run_mark_ended(
                run_id=run_id, status=RunStatus.STOPPED, detail="supervisor shut down before `flwr run` was started"
            )
        for run_id in [*self._children, *self.finisher.run_ids()]:
            services.run_request_stop_by_id(run_id=run_id)

    def on_lines_saved(self, owner: Owner, lines: list[Line]) -> None:
        """The log writer's hook (its thread): Flower's run id, from what `flwr run` printed.

        Only the first such line of the run's own `flwr run` counts: FedML's system lines (which
        echo the argv, run config included) never, and neither does anything streamed after it
        (the ServerApp's log, with whatever sites and ClientApps made it say)."""
        run_id = str(owner.id)
        if owner.kind != "run" or run_id in self._announced:
            return
        for line in lines:
            if line.source == "run" and line.stream == LogStream.STDOUT:
                flower_run_id = flower.parse_run_started(line.text)
                if flower_run_id:
                    self._announced.add(run_id)
                    self.events.put(FlowerAccepted(run_id=run_id, flower_run_id=flower_run_id))
                    return

    # ---------------------------------------------------------------- start
    def _claim(self) -> bool:
        did = False
        for run in selectors.runs_to_claim(project_slugs=self.scope.project_slugs):
            # Claimed at once, so the request learns a supervisor has it even while the
            # SuperLink is still coming up; spawned once the SuperLink listens.
            if services.run_claim(run_id=run.pk, supervisor_id=self.supervisor_id):
                self._awaiting_superlink[str(run.pk)] = time.monotonic()
                did = True
        return did

    def _spawn_runs_whose_superlink_listens(self) -> bool:
        did = False
        for run_id, claimed_at in list(self._awaiting_superlink.items()):
            run = selectors.run_get(run_id=run_id, projects=EVERY_PROJECT)
            if run is None or run.status != RunStatus.STARTING:
                self._awaiting_superlink.pop(run_id, None)  # stopped meanwhile
                continue
            waited = time.monotonic() - claimed_at
            # `flwr run` fails at once if the SuperLink is not listening yet. After the
            # timeout it is spawned anyway and reports what is wrong.
            if waited < SUPERLINK_READY_TIMEOUT and not superlink_listening(run.coordinator_session):
                if not run.status_detail:
                    link = run.coordinator_session
                    address = superlink_config(link).address if link is not None else "?"
                    services.run_note(
                        run_id=run.pk, detail=f"waiting for the SuperLink at {address} to accept connections"
                    )
                continue
            self._spawn(run)  # an outage before `flwr run` exists leaves it waiting, tried again
            self._awaiting_superlink.pop(run_id, None)
            did = True
        return did

    def _spawn(self, run: FederatedRun) -> None:
        owner = Owner("run", run.pk)
        log_path = settings.LOG_DIR / f"run{project_file_suffix(run.project)}.log"
        try:
            command = self.table.launcher.run_command(run)
            if shares_app_config(run.project):
                flower.set_current_run_id(settings.FLOWER_APP_DIR, str(run.pk))
            rotate_log(log_path)
            context = ChildContext(
                role=ChildRole.RUN,
                subject_id=str(run.pk),
                source="run",
                owner=owner,
                on_exit=self.events.put,
                streamed=flower.StreamedLines(),
            )
            self.telemetry.watch(run)  # before `flwr run` exists: a leftover file is cleared first
            child = self.table.spawn(command, label=f"run {run.pk}", context=context, log_path=log_path)
        except (OSError, KeyError, ValueError) as exc:
            self.telemetry.finish(str(run.pk))
            logger.exception("could not spawn run %s", run.pk)
            writer = self.table.writer
            writer.open(owner, None)
            self.table.system(owner, "run", f"[fedml] could not start `flwr run`: {exc}")
            writer.close_owner(owner)
            writer.flush()  # the line is saved before the row says why the run failed
            clear_current_run_id(run.pk)
            services.run_mark_ended(
                run_id=run.pk, status=RunStatus.FAILED, detail=f"FedML could not start `flwr run`: {exc}"
            )
            return
        self._children[str(run.pk)] = child
        self._awaiting_superlink.pop(str(run.pk), None)
        identity = procs.process_identity(child.pid)
        self.owed.do(
            f"record run {run.pk} as spawned",
            lambda: services.run_mark_spawned(run_id=run.pk, pid=child.pid, log_path=str(log_path), identity=identity),
        )

    # ---------------------------------------------------------------- Flower's run id, exit
    def _handle_events(self) -> bool:
        return self.events.process(self._handle_event)

    def _handle_event(self, event: FlowerAccepted | ExitReport) -> None:
        if isinstance(event, FlowerAccepted):
            try:
                services.run_set_flower_run_id(run_id=event.run_id, flower_run_id=event.flower_run_id)
            except Exception as exc:
                log_unless_outage(exc, "could not record Flower's run id for run %s", event.run_id)
            return
        run_id = event.child.context.subject_id
        self._children.pop(run_id, None)
        following = self.reattacher.follow(run_id, event, stopping=run_id in self._stop_sent or not self.accepting)
        if following is not None:
            self._children[run_id] = following
            return
        self._announced.discard(run_id)  # every line of it is saved by now
        self._stop_sent.pop(run_id, None)
        self.reattacher.forget(run_id)
        try:
            services.run_record_process_exit(
                run_id=run_id, exit_code=event.child.exit_code, signal=event.child.exit_signal
            )
        except Exception as exc:
            log_unless_outage(exc, "could not record the exit of `flwr run` for run %s", run_id)
        self.finisher.begin(run_id, event)

    # ---------------------------------------------------------------- stop
    def _handle_stop_requests(self) -> bool:
        did = False
        for run in selectors.runs_stop_requested(supervisor_id=self.supervisor_id):
            if services.run_mark_stopping(run_id=run.pk):
                self._stop(run)
                did = True
        return did

    def _stop(self, run: FederatedRun) -> None:
        run_id = str(run.pk)
        if self._awaiting_superlink.pop(run_id, None) is not None:
            services.run_mark_ended(
                run_id=run.pk,
                status=RunStatus.STOPPED,
                detail="stopped before `flwr run` was started (the SuperLink was not accepting connections yet)",
            )
            return
        child = self._children.get(run_id)
        if child is not None:
            self._stop_sent[run_id] = time.monotonic()
        if run.flower_run_id:
            # Through Flower's own control path first; `flwr run --stream` then exits by itself.
            self.control.stop(run)
        elif child is not None and child.alive:
            self.table.terminate(child)

    def _terminate_after_grace(self) -> None:
        """SIGTERM a `flwr run` that has not exited RUN_STOP_GRACE after its stop was sent."""
        now = time.monotonic()
        for run_id, sent in list(self._stop_sent.items()):
            child = self._children.get(run_id)
            if child is None:
                self._stop_sent.pop(run_id)
            elif child.alive and child.term_sent_at is None and now - sent > RUN_STOP_GRACE:
                self.table.terminate(child)
