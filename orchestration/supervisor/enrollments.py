"""SuperNode enrollment: register or unregister participants' public keys with the SuperLink
(Flower's SuperNode authentication), once a SuperLink listens."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from orchestration import flower, selectors, services
from orchestration.models import NodeEnrollment, NodeSession
from orchestration.states import EnrollmentStatus, SessionStatus
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.common import ENROLL_RETRY_SECONDS, log_unless_outage, superlink_listening
from orchestration.supervisor.scope import Scope

logger = logging.getLogger(__name__)

FEDML_FAILED = "FedML failed while talking to Flower"


@dataclass(frozen=True)
class _InFlight:
    status: str  # what was asked: register (requested) or unregister (revoke_requested)
    output: Future[list[str]]


class EnrollmentWorker:
    def __init__(self, *, supervisor_id: Any, scope: Scope, table: ChildTable) -> None:
        self.supervisor_id = supervisor_id
        self.scope = scope
        self.table = table
        self.accepting = True  # no new claims once the supervisor shuts down
        # Loop thread only.
        self._retry_at: dict[str, float] = {}  # enrollment id -> not before (a failed revocation)
        self._in_flight: dict[str, _InFlight] = {}  # enrollment id -> its `flwr supernode` command

    def step(self) -> bool:
        did = self._record_answers()
        if self.accepting:
            did |= self._claim()
        return did

    def busy(self) -> bool:
        return bool(self._in_flight)

    def _claim(self) -> bool:
        did = False
        now = time.monotonic()
        for enrollment in selectors.enrollments_pending(project_slugs=self.scope.project_slugs):
            if self._retry_at.get(str(enrollment.pk), 0) > now:
                continue
            superlink = selectors.session_live_superlink(project=enrollment.node.project)
            if superlink is None or superlink.status != SessionStatus.RUNNING or not superlink_listening(superlink):
                continue  # registration needs a listening SuperLink; try again when there is one
            if services.enrollment_claim(enrollment_id=enrollment.pk, supervisor_id=self.supervisor_id):
                self._start(enrollment, superlink)
                did = True
        return did

    def _start(self, enrollment: NodeEnrollment, superlink: NodeSession) -> None:
        try:
            command = self.table.launcher.enrollment_command(enrollment, superlink)
        except Exception:
            logger.exception("enrollment %s failed", enrollment.pk)
            self._release(enrollment.pk)
            return
        output = self.table.submit(command, label=f"enrollment {enrollment.pk}", subject_id=str(enrollment.pk))
        self._in_flight[str(enrollment.pk)] = _InFlight(status=enrollment.status, output=output)

    def _record_answers(self) -> bool:
        done = [(key, item) for key, item in self._in_flight.items() if item.output.done()]
        for key, item in done:
            try:
                self._record(key, item.status, item.output.result())
            except Exception as exc:
                log_unless_outage(exc, "enrollment %s failed", key)  # an outage keeps the answer for later
                self._release(key)
            del self._in_flight[key]
        return bool(done)

    def _release(self, enrollment_id: Any) -> None:
        """FedML's own failure: the work goes back to the queue, saying so."""
        try:
            services.enrollment_mark_failed(enrollment_id=enrollment_id, detail=FEDML_FAILED, keep_status=True)
        except Exception as exc:
            log_unless_outage(exc, "could not release enrollment %s", enrollment_id)

    def _record(self, enrollment_id: str, asked: str, out: list[str]) -> None:
        result = flower.parse_cli_json("\n".join(out))
        ok = bool(result and result.get("success"))
        if asked == EnrollmentStatus.REQUESTED and ok and result and result.get("node-id") is not None:
            services.enrollment_mark_registered(enrollment_id=enrollment_id, flower_node_id=str(result["node-id"]))
        elif asked == EnrollmentStatus.REVOKE_REQUESTED and ok:
            services.enrollment_mark_revoked(enrollment_id=enrollment_id)
        else:
            error = (result or {}).get("error-message") or "\n".join(out[-10:])
            # A failed registration ends failed (the caller sees why); a revocation is retried.
            retry = asked == EnrollmentStatus.REVOKE_REQUESTED
            if retry:
                self._retry_at[enrollment_id] = time.monotonic() + ENROLL_RETRY_SECONDS
            services.enrollment_mark_failed(enrollment_id=enrollment_id, detail=f"Flower: {error}", keep_status=retry)
