"""The web side's waits for the supervisor: interfaces (APIs, admin, commands) poll a row until it settles."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from core.errors import SupervisorUnavailable
from orchestration.models import (
    RUN_LIVE_STATUSES,
    SESSION_LIVE_STATUSES,
    EnrollmentStatus,
    FederatedRun,
    NodeEnrollment,
    NodeSession,
    RunStatus,
    SessionStatus,
)
from orchestration.services import SUPERVISOR_HINT, run_withdraw, session_withdraw


def _wait_for(fetch: Any, *, done: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    row = fetch()
    while not done(row) and time.monotonic() < deadline:
        time.sleep(0.05)
        row = fetch()
    return row


def session_wait_spawned(*, session_id: Any, timeout: float | None = None) -> NodeSession:
    """Wait until the supervisor has spawned the session (or failed to).

    If no supervisor claimed it in time the request is withdrawn, so no half-made row stays.
    """
    timeout = settings.START_WAIT_SECONDS if timeout is None else timeout
    session = _wait_for(
        lambda: NodeSession.objects.get(pk=session_id),
        done=lambda s: s.status not in (SessionStatus.REQUESTED, SessionStatus.STARTING),
        timeout=timeout,
    )
    if session.status == SessionStatus.REQUESTED:
        if session_withdraw(session=session):
            raise SupervisorUnavailable(
                f"No supervisor picked up the request within {timeout:g}s. {SUPERVISOR_HINT}",
                extra={"hint": "python manage.py runsupervisor"},
            )
        session = NodeSession.objects.get(pk=session_id)
    return session


def session_wait_ended(*, session_id: Any, timeout: float) -> NodeSession:
    return _wait_for(
        lambda: NodeSession.objects.get(pk=session_id),
        done=lambda s: s.status not in SESSION_LIVE_STATUSES,
        timeout=timeout,
    )


def run_wait_spawned(*, run_id: Any, timeout: float | None = None) -> FederatedRun:
    timeout = settings.START_WAIT_SECONDS if timeout is None else timeout
    run = _wait_for(
        lambda: FederatedRun.objects.get(pk=run_id),
        done=lambda r: r.status != RunStatus.REQUESTED and (r.status != RunStatus.STARTING or r.pid is not None),
        timeout=timeout,
    )
    if run.status == RunStatus.REQUESTED:
        if run_withdraw(run=run):
            raise SupervisorUnavailable(f"No supervisor picked up the run within {timeout:g}s. {SUPERVISOR_HINT}")
        run = FederatedRun.objects.get(pk=run_id)
    return run


def run_wait_flower_id(*, run_id: Any, timeout: float) -> FederatedRun:
    return _wait_for(
        lambda: FederatedRun.objects.get(pk=run_id),
        done=lambda r: bool(r.flower_run_id) or r.status not in RUN_LIVE_STATUSES,
        timeout=timeout,
    )


def run_wait_ended(*, run_id: Any, timeout: float) -> FederatedRun:
    return _wait_for(
        lambda: FederatedRun.objects.get(pk=run_id),
        done=lambda r: r.status not in RUN_LIVE_STATUSES,
        timeout=timeout,
    )


def enrollment_wait(*, enrollment_id: Any, timeout: float) -> NodeEnrollment:
    return _wait_for(
        lambda: NodeEnrollment.objects.get(pk=enrollment_id),
        done=lambda e: e.status not in (EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED),
        timeout=timeout,
    )
