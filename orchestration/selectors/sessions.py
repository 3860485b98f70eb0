"""Node sessions: the live SuperLink and SuperNodes, what they listen on, and the supervisor's work queue."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet

from accounts.permissions import ProjectScope
from orchestration.models import (
    SESSION_LIVE_STATUSES,
    FederatedRun,
    Node,
    NodeSession,
    Project,
    SessionKind,
    SessionStatus,
)
from orchestration.ports import Bind, extra_args_binds
from orchestration.selectors.scope import within
from orchestration.selectors.supervisors import supervisors_alive


def session_live_superlink(*, project: Project) -> NodeSession | None:
    return (
        NodeSession.objects.select_related("node", "node__project")
        .filter(node__project=project, kind=SessionKind.SUPERLINK, status__in=SESSION_LIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def session_live_supernodes(*, node: Node) -> QuerySet[NodeSession]:
    return (
        NodeSession.objects.select_related("node")
        .filter(node=node, kind=SessionKind.SUPERNODE, status__in=SESSION_LIVE_STATUSES)
        .order_by("created_at")
    )


def session_latest(*, node: Node, kind: str) -> NodeSession | None:
    return NodeSession.objects.filter(node=node, kind=kind).order_by("-created_at").first()


def session_get(*, session_id: Any, projects: ProjectScope) -> NodeSession | None:
    """The session if its node belongs to one of `projects`. Interfaces pass the caller's; the
    supervisor, which serves every project, passes EVERY_PROJECT."""
    return (
        NodeSession.objects.select_related("node", "node__project")
        .filter(pk=session_id, **within("node__project_id", projects))
        .first()
    )


def session_live_binds() -> list[Bind]:
    """What every live session of every project listens on (or will): its runtime API and any
    health server its extra_args open. Compared after normalisation by `orchestration.ports`."""
    binds: list[Bind] = []
    for config in NodeSession.objects.filter(status__in=SESSION_LIVE_STATUSES).values_list("runtime_config", flat=True):
        if not isinstance(config, dict):
            continue
        host, port = config.get("host"), config.get("port")
        if isinstance(host, str) and isinstance(port, int) and port > 0:
            binds.append(Bind(host, port))
        extra = config.get("extra_args")
        if isinstance(extra, list):
            binds += extra_args_binds(a for a in extra if isinstance(a, str))
    return binds


def sessions_to_claim(*, node_external_ids: tuple[str, ...] | None) -> list[NodeSession]:
    return list(
        NodeSession.objects.select_related("node")
        .requested()
        .filter(**within("node__external_id", node_external_ids))
        .order_by("created_at")
    )


def sessions_stop_requested(*, supervisor_id: Any) -> list[NodeSession]:
    return list(
        NodeSession.objects.filter(
            supervisor_id=supervisor_id,
            stop_requested_at__isnull=False,
            status__in=(SessionStatus.STARTING, SessionStatus.RUNNING),
        )
    )


def orphaned_sessions(*, node_external_ids: tuple[str, ...] | None) -> list[NodeSession]:
    """Live rows claimed by a supervisor that no longer beats."""
    alive = set(supervisors_alive().values_list("id", flat=True))
    rows = NodeSession.objects.claimed().filter(**within("node__external_id", node_external_ids))
    return [row for row in rows if row.supervisor_id not in alive]


def sessions_ended_since(*, node: Node, since: datetime) -> list[NodeSession]:
    """The node's SuperNode sessions created since `since` that already ended by themselves."""
    return list(
        NodeSession.objects.filter(
            node=node,
            kind=SessionKind.SUPERNODE,
            created_at__gte=since,
            status__in=(SessionStatus.FAILED, SessionStatus.LOST, SessionStatus.EXITED),
        )
    )


def session_status(*, session_id: Any) -> str | None:
    return NodeSession.objects.filter(pk=session_id).values_list("status", flat=True).first()


def sessions_during_run(*, run: FederatedRun, slack: timedelta) -> list[NodeSession]:
    """The project's SuperLink and SuperNode sessions that were alive during the run (with `slack` either side)."""
    start = (run.started_at or run.created_at) - slack
    sessions = NodeSession.objects.select_related("node").filter(
        node__project_id=run.project_id, started_at__isnull=False
    )
    sessions = sessions.exclude(ended_at__lt=start)
    if run.ended_at is not None:
        sessions = sessions.filter(started_at__lte=run.ended_at + slack)
    return list(sessions)
