"""The dashboard's output shapes (../shared/seed-dashboard/frontend/lib/fetchers/types.ts), one function each.

Field names and nullability are the dashboard's: snake_case for rows (`Project`, `Node`, `NodeSession`,
`FederatedRun`), camelCase where types.ts has it (`nodeCount`, `latestRun`, ...). FedML's extras are
added beside them (`join_policy`, `join_status`, `kind`, `flower_run_id`, `created_at`); nothing the
dashboard reads is renamed. Plain functions over model instances, as in orchestration.serializers.
"""

from __future__ import annotations

from typing import Any

from accounts.models import Node, Project
from core.public_paths import public_text, public_value
from orchestration.models import FederatedRun, NodeSession
from orchestration.serializers import iso
from portal.selectors import ProjectStats

# Never shown: a SuperNode's private key path, and the supervisor's process bookkeeping.
RUNTIME_CONFIG_PRIVATE_KEYS = frozenset({"auth_private_key", "process"})


def _id(value: Any) -> str | None:
    return str(value) if value is not None else None


def project_output(project: Project) -> dict[str, Any]:
    return {
        "id": str(project.id),
        "slug": project.slug,
        "name": project.name,
        "description": project.description,
        "config": project.config,
        "created_by": _id(project.created_by_id),
        "created_at": iso(project.created_at),
        "updated_at": iso(project.updated_at),
        "join_policy": project.join_policy,
    }


def node_output(node: Node) -> dict[str, Any]:
    return {
        "id": str(node.id),
        "project_id": str(node.project_id),
        "user_id": _id(node.user_id),
        "external_id": node.external_id,
        "role": node.role,
        "display_name": node.display_name,
        "metadata": node.metadata,
        "created_at": iso(node.created_at),
        "updated_at": iso(node.updated_at),
        "join_status": node.join_status,
    }


def session_output(session: NodeSession) -> dict[str, Any]:
    config = session.runtime_config if isinstance(session.runtime_config, dict) else {}
    return {
        "id": str(session.id),
        "node_id": str(session.node_id),
        "status": session.status,
        "pid": session.pid,
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at),
        "runtime_config": {k: public_value(v) for k, v in config.items() if k not in RUNTIME_CONFIG_PRIVATE_KEYS},
        "log_stream": public_text(session.log_stream),
        "created_at": iso(session.created_at),
        "kind": session.kind,
    }


def run_output(run: FederatedRun, *, with_log: bool = True) -> dict[str, Any]:
    """`with_log=False` for callers who may browse the project but have no standing in it: they see
    that a run exists and its status, never its config, metrics, log or processes."""
    return {
        "id": str(run.id),
        "project_id": str(run.project_id),
        "status": run.status,
        "label": run.label,
        "config": run.config if with_log else None,
        "coordinator_session_id": _id(run.coordinator_session_id) if with_log else None,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "log_stream": public_text(run.log_stream) if with_log else None,
        # Aggregated only (per-node ones live in round_metrics); the model path relative to its setting.
        "metrics": public_value(run.metrics) if with_log else None,
        "flower_run_id": (run.flower_run_id or None) if with_log else None,
        "created_at": iso(run.created_at),
    }


def _run_or_none(run: FederatedRun | None, *, with_log: bool) -> dict[str, Any] | None:
    return None if run is None else run_output(run, with_log=with_log)


def project_summary_output(project: Project, stats: ProjectStats, *, with_log: bool) -> dict[str, Any]:
    """ProjectSummary."""
    return {
        "project": project_output(project),
        "nodeCount": stats.node_count,
        "coordinatorCount": stats.coordinator_count,
        "participantCount": stats.participant_count,
        "activeRunCount": stats.active_run_count,
        "latestRun": _run_or_none(stats.latest_run, with_log=with_log),
    }


def project_detail_output(project: Project, stats: ProjectStats, *, with_log: bool) -> dict[str, Any]:
    """ProjectDetailResponse."""
    return {
        "project": project_output(project),
        "stats": {
            "nodeCount": stats.node_count,
            "coordinatorCount": stats.coordinator_count,
            "participantCount": stats.participant_count,
            "activeRun": _run_or_none(stats.active_run, with_log=with_log),
            "latestRun": _run_or_none(stats.latest_run, with_log=with_log),
        },
    }


def session_with_node_output(session: NodeSession) -> dict[str, Any]:
    return {"session": session_output(session), "node": node_output(session.node)}


def dashboard_output(
    *,
    project: Project,
    nodes: list[Node],
    sessions: list[NodeSession],
    active_run: FederatedRun | None,
    recent_runs: list[FederatedRun],
) -> dict[str, Any]:
    """DashboardData."""
    return {
        "project": project_output(project),
        "nodes": [node_output(n) for n in nodes],
        "nodeSessions": [session_output(s) for s in sessions],
        "activeRun": _run_or_none(active_run, with_log=True),
        "recentRuns": [run_output(r) for r in recent_runs],
    }
