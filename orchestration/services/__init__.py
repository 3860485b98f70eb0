"""Every write to FedML's state: APIs, admin, commands, consumers and the supervisor call these.

Split by entity; this package re-exports the public functions so callers write
`services.run_request_start(...)`. Reads live in `orchestration.selectors`; the web side's
waits for the supervisor live in `orchestration.waits` (the interface layer). Status changes go
through `transitions` (the tables are in `orchestration.states`). Projects and nodes are
`accounts.services`.
"""

from orchestration.services.common import (
    SUPERVISOR_HINT,
    invalid_input,
    restart_policy_require_valid,
    supervisor_require_alive,
)
from orchestration.services.enrollments import (
    enrollment_claim,
    enrollment_mark_failed,
    enrollment_mark_registered,
    enrollment_mark_revoked,
    enrollment_release_dead,
    node_enrollment_request,
    node_enrollment_revoke,
)
from orchestration.services.events import (
    enrollment_event_emit,
    event_emit,
    run_event_emit,
    session_event_emit,
)
from orchestration.services.housekeeping import (
    PruneReport,
    data_dirs_ensure,
    history_prune,
)
from orchestration.services.logs import (
    LogLineIn,
    NewLogLine,
    log_lines_append,
)
from orchestration.services.ports import (
    bind_require_allowed,
    bind_require_free,
    host_require_allowed,
    port_choice_serialize,
    port_choose_free,
    port_policy_superlink,
    port_policy_supernode,
)
from orchestration.services.runs import (
    FEDERATION_NAME_RE,
    project_run_config_set,
    project_run_defaults,
    round_metric_record,
    run_claim,
    run_mark_ended,
    run_mark_reattached,
    run_mark_spawned,
    run_mark_stopping,
    run_note,
    run_note_waiting,
    run_record_artifact,
    run_record_process_exit,
    run_request_start,
    run_request_stop,
    run_request_stop_by_id,
    run_set_flower_run_id,
    run_withdraw,
)
from orchestration.services.sessions import (
    WITHDRAWN_DETAIL,
    session_claim,
    session_mark_ended,
    session_mark_failed_to_start,
    session_mark_lost,
    session_mark_restarting,
    session_mark_running,
    session_mark_stopping,
    session_request_stop,
    session_withdraw,
    superlink_request_start,
    superlink_request_stop,
)
from orchestration.services.supervisors import (
    supervisor_heartbeat,
    supervisor_mark_stopped,
)
from orchestration.services.transitions import (
    enrollment_transition,
    run_transition,
    session_transition,
)

__all__ = [
    "FEDERATION_NAME_RE",
    "LogLineIn",
    "NewLogLine",
    "PruneReport",
    "SUPERVISOR_HINT",
    "WITHDRAWN_DETAIL",
    "bind_require_allowed",
    "bind_require_free",
    "data_dirs_ensure",
    "enrollment_claim",
    "enrollment_event_emit",
    "enrollment_mark_failed",
    "enrollment_mark_registered",
    "enrollment_mark_revoked",
    "enrollment_release_dead",
    "enrollment_transition",
    "event_emit",
    "history_prune",
    "host_require_allowed",
    "invalid_input",
    "log_lines_append",
    "node_enrollment_request",
    "node_enrollment_revoke",
    "port_choice_serialize",
    "port_choose_free",
    "port_policy_superlink",
    "port_policy_supernode",
    "round_metric_record",
    "run_claim",
    "run_event_emit",
    "run_mark_ended",
    "run_mark_reattached",
    "run_mark_spawned",
    "run_mark_stopping",
    "run_note",
    "run_note_waiting",
    "run_record_artifact",
    "run_record_process_exit",
    "project_run_config_set",
    "project_run_defaults",
    "run_request_start",
    "run_request_stop",
    "run_request_stop_by_id",
    "run_set_flower_run_id",
    "run_transition",
    "run_withdraw",
    "session_claim",
    "session_event_emit",
    "session_mark_ended",
    "session_mark_failed_to_start",
    "session_mark_lost",
    "session_mark_restarting",
    "session_mark_running",
    "session_mark_stopping",
    "session_request_stop",
    "session_transition",
    "session_withdraw",
    "superlink_request_start",
    "superlink_request_stop",
    "supervisor_heartbeat",
    "supervisor_mark_stopped",
    "restart_policy_require_valid",
    "supervisor_require_alive",
]
