"""Restart policy: rows left live by a supervisor that died on this host are made to tell the
truth, and no process of theirs is left behind (docs/architecture.md, "Restart policy").

A process still alive is terminated, not adopted: its pipes died with the old supervisor, so
its log could no longer be complete. A run is stopped through Flower first, and its row says
what Flower reported.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

from orchestration import flower, procs, selectors, services
from orchestration.logpipe import LogWriter, Owner
from orchestration.models import FederatedRun, NodeSession
from orchestration.runtime_config import ProcessIdentity, superlink_config
from orchestration.states import RunStatus
from orchestration.supervisor.common import (
    CONTROL_TIMEOUT,
    DB_RETRY_FIRST,
    DB_RETRY_MAX,
    EOF_WAIT,
    clear_current_run_id,
    is_database_outage,
)
from orchestration.supervisor.finisher import flower_outcome
from orchestration.supervisor.flower_control import FlowerControl
from orchestration.supervisor.scope import Scope

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Reconciler:
    """One pass at start-up, in a thread of its own beside the loop.

    It waits on `flwr stop`/`flwr ls`, which the loop reaps, and on orphaned process groups to
    die, so it cannot run on the loop's thread. It shares no state with the workers: rows change
    through services, commands start through the (locked) child table, and `_done` is an Event.
    """

    def __init__(self, *, hostname: str, scope: Scope, control: FlowerControl, writer: LogWriter) -> None:
        self.hostname = hostname
        self.scope = scope
        self.control = control
        self.writer = writer
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._reported = False  # loop thread only

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)
        self._thread.start()

    def step(self) -> bool:
        """Says once that the pass is over (it did work then)."""
        if self._reported or not self._done.is_set():
            return False
        self._reported = True
        return True

    def busy(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def _run(self) -> None:
        wait = DB_RETRY_FIRST
        try:
            while True:
                try:
                    self.reconcile()  # safe to repeat: each pass asks again what is still orphaned
                    return
                except Exception as exc:
                    if not is_database_outage(exc):
                        logger.exception("reconciliation failed")
                        return
                    logger.warning("reconciliation waits for the database (%s)", exc)
                    connection.close()
                    time.sleep(wait)  # its own thread: the loop goes on meanwhile
                    wait = min(wait * 2, DB_RETRY_MAX)
        finally:
            connection.close()
            self._done.set()

    def reconcile(self) -> None:
        for run in selectors.orphaned_runs(project_slugs=self.scope.project_slugs):
            if self._dead_owner_is_local(run.supervisor_id):
                self._reconcile_run(run)
        for session in selectors.orphaned_sessions(node_external_ids=self.scope.node_external_ids):
            if self._dead_owner_is_local(session.supervisor_id):
                self._reconcile_session(session)
        services.enrollment_release_dead(alive_supervisor_ids=selectors.supervisor_ids_alive())

    def _dead_owner_is_local(self, supervisor_id: Any) -> bool:
        beat = selectors.supervisor_heartbeat_get(supervisor_id=supervisor_id) if supervisor_id else None
        return beat is None or beat.hostname == self.hostname

    def _reconcile_run(self, run: FederatedRun) -> None:
        notes = [f"supervisor {run.supervisor_id} died while the run was {run.status}"]
        if run.pid is None and not run.flower_run_id:
            # Claimed but never spawned (it was waiting for its SuperLink): nothing to stop.
            notes.append("`flwr run` had not been started")
            clear_current_run_id(run.pk)
            services.run_mark_ended(run_id=run.pk, status=RunStatus.FAILED, detail="; ".join(notes))
            return
        superlink = run.coordinator_session
        superlink_identity = superlink_config(superlink).process if superlink else None
        superlink_alive = superlink_identity is not None and procs.identity_alive(superlink_identity.to_json())
        flower_result: flower.FlowerRunStatus | None = None
        if run.flower_run_id and superlink_alive:
            # Reach Flower while its SuperLink is still up: stop the run, then read what it says.
            owner = Owner("run", run.pk)
            # Its lines go to the run's file too, where its earlier lines are.
            self.writer.open(owner, Path(run.log_path) if run.log_path else None)
            _wait(self.control.stop(run))
            flower_result = _wait(self.control.status(run))
            self.writer.close_owner(owner)
        identity = ProcessIdentity.from_json(run.config.get("process"))
        if identity and procs.terminate_orphan_group(identity.to_json(), timeout=settings.STOP_TIMEOUT_SECONDS):
            notes.append(f"FedML terminated the orphaned `flwr run` (pid {identity.pid}) on restart")
        if flower_result is not None and flower_result.finished:
            status, said = flower_outcome(flower_result)
            notes.append(said)
        else:
            status = RunStatus.FAILED
            notes.append(
                "Flower's outcome could not be read (SuperLink gone)"
                if not superlink_alive
                else "Flower did not report the run finished"
            )
        clear_current_run_id(run.pk)
        services.run_mark_ended(run_id=run.pk, status=status, detail="; ".join(notes))

    def _reconcile_session(self, session: NodeSession) -> None:
        identity = ProcessIdentity.from_json(session.runtime_config.get("process"))
        if identity and procs.terminate_orphan_group(identity.to_json(), timeout=settings.STOP_TIMEOUT_SECONDS):
            detail = (
                f"supervisor {session.supervisor_id} died; FedML terminated the orphaned process group "
                f"(pid {identity.pid}) on restart"
            )
        else:
            detail = f"supervisor {session.supervisor_id} died; the process (pid {session.pid}) was already gone"
        services.session_mark_lost(session_id=session.pk, detail=detail)


def _wait(answer: Future[T]) -> T | None:
    """The answer of a command the loop runs for us; None if it failed or never came."""
    try:
        return answer.result(timeout=CONTROL_TIMEOUT + EOF_WAIT + 5)
    except Exception:
        logger.exception("a `flwr` command for reconciliation failed")
        return None
