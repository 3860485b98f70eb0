"""Every read that interfaces and the supervisor make, with `select_related` already applied.

Split by entity; this package re-exports the public functions (`selectors.run_get(...)`).
"""

from orchestration.selectors.housekeeping import (
    flower_app_copies_prunable,
    flower_homes_prunable,
    project_events_before,
    supervisor_heartbeats_prunable,
)
from orchestration.selectors.logs import (
    log_last_seq,
    log_lines_after,
    log_lines_before,
)
from orchestration.selectors.nodes import (
    enrollments_pending,
    node_get,
    nodes_not_connected,
)
from orchestration.selectors.runs import (
    orphaned_runs,
    round_metrics,
    run_get,
    run_latest,
    run_live,
    run_live_on_superlink,
    run_status_and_end,
    runs_stop_requested,
    runs_to_claim,
)
from orchestration.selectors.sessions import (
    orphaned_sessions,
    session_get,
    session_latest,
    session_live_binds,
    session_live_superlink,
    session_live_supernodes,
    session_status,
    sessions_during_run,
    sessions_ended_since,
    sessions_stop_requested,
    sessions_to_claim,
)
from orchestration.selectors.supervisors import (
    supervisor_heartbeat_get,
    supervisor_ids_alive,
    supervisor_is_alive,
    supervisor_status,
    supervisors_alive,
)

__all__ = [
    "enrollments_pending",
    "flower_app_copies_prunable",
    "flower_homes_prunable",
    "log_last_seq",
    "log_lines_after",
    "log_lines_before",
    "node_get",
    "nodes_not_connected",
    "orphaned_runs",
    "orphaned_sessions",
    "project_events_before",
    "round_metrics",
    "run_get",
    "run_latest",
    "run_live",
    "run_live_on_superlink",
    "run_status_and_end",
    "runs_stop_requested",
    "runs_to_claim",
    "session_get",
    "session_latest",
    "session_live_binds",
    "session_live_superlink",
    "session_live_supernodes",
    "session_status",
    "sessions_during_run",
    "sessions_ended_since",
    "sessions_stop_requested",
    "sessions_to_claim",
    "supervisor_heartbeat_get",
    "supervisor_heartbeats_prunable",
    "supervisor_ids_alive",
    "supervisor_is_alive",
    "supervisor_status",
    "supervisors_alive",
]
