"""One output shape per entity, used by the APIs (coordinator and participant), the project
events, the websockets and the admin: a field renamed here is renamed everywhere.

Plain functions over model instances, not DRF serializers: the event and log paths are hot,
and every field here is a simple read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.public_paths import public_text, public_value
from orchestration.models import FederatedRun, LogLine, NodeEnrollment, NodeSession, RoundMetric


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _first_line(text: str, limit: int = 500) -> str:
    return public_text(text.splitlines()[0])[:limit] if text else ""


def public_path(path: str) -> str | None:
    """A stored path (a log file) as the API shows it: relative to its directory's setting."""
    return public_text(path) or None


# ----------------------------------------------------------------- runs
def run_output(run: FederatedRun) -> dict[str, Any]:
    """A run in full: `GET runs/<id>`, `runs/active`."""
    return {
        "id": str(run.id),
        "run_id": str(run.id),
        "flower_run_id": run.flower_run_id or None,
        "status": run.status,
        "label": run.label,
        "federation_name": run.federation_name,
        "pid": run.pid,
        "log_path": public_path(run.log_path),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "exit_code": run.exit_code,
        "signal": run.signal,
        "status_detail": public_text(run.status_detail),
        "config": run.config,
        "metrics": public_value(run.metrics),  # artifact_path relative to FEDML_ARTIFACTS_DIR
        "session_id": str(run.coordinator_session_id) if run.coordinator_session_id else None,
        "created_at": iso(run.created_at),
    }


def run_event_output(run: FederatedRun) -> dict[str, Any]:
    """A run's status change, as the `run.status` event carries it (the detail's first line)."""
    return {
        "run_id": str(run.pk),
        "flower_run_id": run.flower_run_id or None,
        "status": run.status,
        "pid": run.pid,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "status_detail": _first_line(run.status_detail),
    }


def pid_text(pid: int | None) -> str | None:
    """The dashboard's types.ts has control responses' pids as strings."""
    return None if pid is None else str(pid)


def run_info_output(run: FederatedRun, *, coordinator: Any = None) -> dict[str, Any]:
    """The live run as the coordinator's health shows it (the dashboard's RunInfo)."""
    return {
        "federation_name": run.federation_name,
        "started_at": iso(run.started_at),
        "pid": pid_text(run.pid),
        "log_path": public_path(run.log_path),
        "run_id": str(run.id),
        "flower_run_id": run.flower_run_id or None,
        "status": run.status,
        "project_id": str(run.project_id),
        "coordinator_node_id": str(coordinator.id) if coordinator is not None else None,
        "user_id": str(coordinator.user_id) if coordinator is not None and coordinator.user_id else None,
    }


def round_output(metric: RoundMetric, *, per_node: bool) -> dict[str, Any]:
    """One round's phase; `per_node=False` for participants, who see aggregated metrics only."""
    return {
        "round": metric.round,
        "phase": metric.phase,
        "aggregated": metric.aggregated,
        "per_node": metric.per_node if per_node else {},
    }


# ----------------------------------------------------------------- sessions
def session_output(session: NodeSession) -> dict[str, Any]:
    """A SuperLink or SuperNode session in full (its process identity stays private)."""
    return {
        "session_id": str(session.id),
        "node_id": str(session.node_id),
        "kind": session.kind,
        "status": session.status,
        "pid": session.pid,
        "log_path": public_path(session.log_path),
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at),
        "exit_code": session.exit_code,
        "signal": session.signal,
        "status_detail": public_text(session.status_detail),
        "runtime_config": {k: public_value(v) for k, v in session.runtime_config.items() if k != "process"},
    }


def session_event_output(session: NodeSession) -> dict[str, Any]:
    """A session's status change, as the `session.status` event carries it."""
    return {
        "session_id": str(session.pk),
        "node_id": str(session.node_id),
        "kind": session.kind,
        "status": session.status,
        "pid": session.pid,
        "exit_code": session.exit_code,
        "signal": session.signal,
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at),
        "status_detail": _first_line(session.status_detail),
    }


# ----------------------------------------------------------------- enrollments
def enrollment_output(enrollment: NodeEnrollment) -> dict[str, Any]:
    """A node's SuperNode key enrollment: the enroll/revoke answers."""
    return {
        "enrollment_id": str(enrollment.pk),
        "node_id": str(enrollment.node_id),
        "status": enrollment.status,
        "flower_node_id": enrollment.flower_node_id or None,
        "detail": public_text(enrollment.detail) or None,
    }


def enrollment_event_output(enrollment: NodeEnrollment) -> dict[str, Any]:
    return {**enrollment_output(enrollment), "detail": public_text(enrollment.detail)[:500]}


# ----------------------------------------------------------------- log lines
def log_line_output(*, seq: int, stream: str, source: str, ts: datetime, text: str) -> dict[str, Any]:
    """One log line, over REST and websockets alike (fields, not an instance: the feeds read values).
    FedML's directories in it (Flower's tracebacks, FedML's own lines) are named by their setting."""
    return {"seq": seq, "stream": stream, "source": source, "ts": iso(ts), "text": public_text(text)}


def log_lines_output(lines: list[LogLine]) -> list[dict[str, Any]]:
    return [log_line_output(seq=x.seq, stream=x.stream, source=x.source, ts=x.ts, text=x.text) for x in lines]
