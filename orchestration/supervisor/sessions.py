"""Session lifecycle: claim requested SuperLinks and SuperNodes, spawn them, stop them on
request, and record how each process ended."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from accounts.permissions import EVERY_PROJECT
from orchestration import procs, selectors, services
from orchestration.logpipe import Owner
from orchestration.models import NodeSession
from orchestration.runtime_config import superlink_config, supernode_config
from orchestration.states import SessionKind, SessionStatus
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.common import (
    SUPERLINK_STOP_WAIT_FOR_RUN,
    Child,
    ChildContext,
    ChildRole,
    ExitReport,
    Inbox,
    Owed,
    log_unless_outage,
    project_file_suffix,
    rotate_log,
)
from orchestration.supervisor.restarts import GiveUp, Restart, Restarts
from orchestration.supervisor.scope import Scope

logger = logging.getLogger(__name__)

SHUTDOWN_REASON = "supervisor shut down"


class SessionWorker:
    def __init__(
        self, *, supervisor_id: Any, scope: Scope, table: ChildTable, owed: Owed, wake: threading.Event
    ) -> None:
        self.supervisor_id = supervisor_id
        self.scope = scope
        self.table = table
        self.owed = owed
        self.exits: Inbox[ExitReport] = Inbox(wake)  # filled by the log writer's thread
        self.accepting = True  # no new claims once the supervisor shuts down
        # Loop thread only.
        self._children: dict[str, Child] = {}  # session id -> its process, until the row says how it ended
        self._superlink_stop_deadline: dict[str, float] = {}  # SuperLinks waiting for their run to stop
        self.restarts = Restarts()  # sessions whose restart policy starts them again after a back-off

    def step(self) -> bool:
        did = self._record_exits()
        if self.accepting:
            did |= self.claim_and_spawn()
            due = self.restarts.due()
            for session_id in due:  # owed: an outage delays a restart, it drops none
                self.owed.queue(f"restart session {session_id}", lambda pk=session_id: self._respawn(pk))
            if due:
                did |= self.owed.settle()
        did |= self._handle_stop_requests()
        return did

    def busy(self, *, superlinks: bool = True) -> bool:
        """Whether a process runs (or waits for its restart); SuperNodes only if not `superlinks`."""
        if self.restarts.waiting():
            return True
        return any(superlinks or c.context.source != "superlink" for c in self._children.values())

    def begin_shutdown(self, *, superlinks: bool = True) -> None:
        """Ask every session this supervisor runs (or would restart) to stop, saying why; the
        SuperNodes only if not `superlinks` (a shutdown stops them before their SuperLink)."""
        self.accepting = False
        for session_id in [*self._children, *self.restarts.waiting()]:
            child = self._children.get(session_id)
            if not superlinks and child is not None and child.context.source == "superlink":
                continue
            session = selectors.session_get(session_id=session_id, projects=EVERY_PROJECT)
            if session is not None and session.is_live:
                services.session_request_stop(session=session, reason=SHUTDOWN_REASON)

    # ---------------------------------------------------------------- start
    def claim_and_spawn(self) -> bool:
        did = False
        for requested in selectors.sessions_to_claim(node_external_ids=self.scope.node_external_ids):
            if services.session_claim(session_id=requested.pk, supervisor_id=self.supervisor_id):
                # Claimed: starting it is owed, even if the database goes away before it starts.
                self.owed.do(f"start session {requested.pk}", lambda pk=requested.pk: self._spawn_claimed(pk))
                did = True
        return did

    def _spawn_claimed(self, session_id: Any) -> None:
        session = selectors.session_get(session_id=session_id, projects=EVERY_PROJECT)
        if session is not None:
            self._spawn(session)

    def _respawn(self, session_id: str) -> None:
        session = selectors.session_get(session_id=session_id, projects=EVERY_PROJECT)
        if session is not None and session.status == SessionStatus.STARTING and session.stop_requested_at is None:
            self._spawn(session)

    def _spawn(self, session: NodeSession) -> None:
        owner = Owner("session", session.pk)
        try:
            command = self.table.launcher.session_command(session)
            if session.kind == SessionKind.SUPERLINK:
                log_path = settings.LOG_DIR / f"superlink{project_file_suffix(session.node.project)}.log"
                rotate_log(log_path)
                source = "superlink"
            else:
                partition = supernode_config(session).partition_id
                log_path = settings.LOG_DIR / f"supernode-p{partition}-{str(session.pk)[:8]}.log"
                source = f"supernode:{str(session.pk)[:8]}"
            context = ChildContext(
                role=ChildRole.SESSION, subject_id=str(session.pk), source=source, owner=owner, on_exit=self.exits.put
            )
            child = self.table.spawn(command, label=f"{session.kind} {session.pk}", context=context, log_path=log_path)
        except (OSError, KeyError, ValueError) as exc:
            # Our infrastructure failed, not the user's app: say so.
            logger.exception("could not spawn session %s", session.pk)
            self.table.writer.close_owner(owner)
            services.session_mark_failed_to_start(
                session_id=session.pk, detail=f"FedML could not start the process: {exc}"
            )
            return
        self._children[str(session.pk)] = child
        identity = procs.process_identity(child.pid)
        self.owed.do(
            f"record session {session.pk} as running",
            lambda: services.session_mark_running(
                session_id=session.pk, pid=child.pid, log_path=str(log_path), identity=identity
            ),
        )

    # ---------------------------------------------------------------- end
    def _record_exits(self) -> bool:
        def record(report: ExitReport) -> None:
            try:
                self._record_exit(report)
            except Exception as exc:
                log_unless_outage(exc, "could not record the end of session %s", report.child.context.subject_id)

        return self.exits.process(record)

    def _record_exit(self, report: ExitReport) -> None:
        child = report.child
        session_id = child.context.subject_id
        self._children.pop(session_id, None)
        self._superlink_stop_deadline.pop(session_id, None)
        session = selectors.session_get(session_id=session_id, projects=EVERY_PROJECT)
        if session is None:
            return
        stop_requested = session.stop_requested_at is not None
        # A stop's detail says why it was asked; otherwise what counts is how the process ended.
        detail = session.status_detail if stop_requested else ""
        last = "\n".join(report.last_lines)
        gave_up = ""
        if not stop_requested and session.is_live and self.accepting:
            decision = self.restarts.decide(
                session_id=session_id,
                policy=_restart_policy(session),
                exit_code=child.exit_code,
                signal_sent=child.term_sent_at is not None or child.kill_sent_at is not None,
                ran_for=time.monotonic() - child.started_mono,
            )
            if isinstance(decision, Restart) and self._mark_restarting(session, child, decision, last):
                return
            self.restarts.forget(session_id)
            gave_up = f"; {decision.reason}" if isinstance(decision, GiveUp) else ""
        if not stop_requested and (child.exit_code != 0 or gave_up):
            detail = f"{child.describe_exit()}{gave_up}. Last lines:\n{last}"
        services.session_mark_ended(
            session_id=session_id,
            exit_code=child.exit_code,
            signal=child.exit_signal,
            stop_requested=stop_requested,
            detail=detail or child.describe_exit(),
        )

    def _mark_restarting(self, session: NodeSession, child: Child, restart: Restart, last: str) -> bool:
        policy = _restart_policy(session)
        said = (
            f"{child.describe_exit()}: restarting in {restart.delay:.0f} s (restart {restart.number}, policy {policy})"
        )
        if not services.session_mark_restarting(
            session_id=session.pk,
            exit_code=child.exit_code,
            signal=child.exit_signal,
            detail=f"{said}. Last lines:\n{last}",
        ):
            return False  # a stop came first
        owner = Owner("session", session.pk)
        self.table.writer.open(owner, Path(session.log_path) if session.log_path else None)
        self.table.system(owner, child.context.source, f"[fedml] {said}")
        self.table.writer.close_owner(owner)
        return True

    # ---------------------------------------------------------------- stop
    def _handle_stop_requests(self) -> bool:
        did = False
        requested = selectors.sessions_stop_requested(supervisor_id=self.supervisor_id)
        # SuperNodes before SuperLinks: a shutdown signals them in that order within a pass.
        for session in sorted(requested, key=lambda s: s.kind == SessionKind.SUPERLINK):
            did |= self._stop(session)
        return did

    def _stop(self, session: NodeSession) -> bool:
        key = str(session.pk)
        self.restarts.forget(key)  # a stop wins over a restart still waiting for its back-off
        if session.kind == SessionKind.SUPERLINK:
            # SIGTERM to a SuperLink with a run's log stream open takes about a minute:
            # stop the run first, then the SuperLink.
            live_run = selectors.run_live_on_superlink(superlink=session)
            if live_run is not None:
                deadline = self._superlink_stop_deadline.setdefault(key, time.monotonic() + SUPERLINK_STOP_WAIT_FOR_RUN)
                if live_run.stop_requested_at is None:
                    services.run_request_stop_by_id(run_id=live_run.pk)
                if time.monotonic() < deadline:
                    return False
        if not services.session_mark_stopping(session_id=session.pk):
            return False
        child = self._children.get(key)
        if child is None:
            services.session_mark_ended(
                session_id=session.pk, exit_code=None, signal=None, stop_requested=True, detail="no process"
            )
        elif child.alive:
            self.table.terminate(child)
        # else it exited already: its exit report, on its way, records how it ended.
        return True


def _restart_policy(session: NodeSession) -> str:
    if session.kind == SessionKind.SUPERLINK:
        return superlink_config(session).restart_policy
    return supernode_config(session).restart_policy
