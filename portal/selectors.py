"""Every read the dashboard's data API makes. A fixed number of queries per call, however many rows.

Who may see what is decided by accounts.permissions (`standings` for lists: one user's standing in
every project at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, OuterRef, Q, Subquery

from accounts import selectors as accounts_selectors
from accounts.models import JoinStatus, Node, NodeRole, Project
from accounts.permissions import ProjectScope
from orchestration import selectors as orchestration_selectors
from orchestration.models import FederatedRun, NodeSession, SessionKind

# The latest run: by started_at (never started last), then created_at. Lists page newest created first.
LATEST_FIRST = (F("started_at").desc(nulls_last=True), F("created_at").desc(), F("id").desc())
NEWEST_FIRST = ("-created_at", "-id")
SESSIONS_SHOWN = 100  # the dashboard's own limit on a project's sessions
RECENT_RUNS_SHOWN = 20


@dataclass
class ProjectStats:
    node_count: int = 0
    coordinator_count: int = 0
    participant_count: int = 0
    active_run_count: int = 0
    active_run: FederatedRun | None = None
    latest_run: FederatedRun | None = None


# ----------------------------------------------------------------- who
# ----------------------------------------------------------------- projects
def project_get(*, project_id: Any, projects: ProjectScope) -> Project | None:
    """The project if it is one of `projects` (EVERY_PROJECT: any; browsing shows every project)."""
    return accounts_selectors.project_get(project_id=project_id, projects=projects)


def projects_newest_first(*, only_ids: set[Any] | None = None) -> list[Project]:
    """Every project (`only_ids=None`) or those listed, newest first."""
    projects = Project.objects.all()
    if only_ids is not None:
        projects = projects.filter(pk__in=only_ids)
    return list(projects.order_by("-created_at", "-id"))


def project_stats(*, project_ids: list[Any]) -> dict[Any, ProjectStats]:
    """Counts of approved nodes by role, live runs, the live run and the latest run: three queries in all."""
    stats = {pk: ProjectStats() for pk in project_ids}
    if not stats:
        return stats
    counts = (
        Node.objects.approved()
        .filter(project_id__in=project_ids)
        .values("project_id", "role")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in counts:
        found = stats[row["project_id"]]
        found.node_count += row["n"]
        if row["role"] == NodeRole.COORDINATOR:
            found.coordinator_count += row["n"]
        elif row["role"] == NodeRole.PARTICIPANT:
            found.participant_count += row["n"]
    for run in FederatedRun.objects.live().filter(project_id__in=project_ids).order_by(*LATEST_FIRST):
        found = stats[run.project_id]
        found.active_run_count += 1
        found.active_run = found.active_run or run
    latest = FederatedRun.objects.filter(project=OuterRef("pk")).order_by(*LATEST_FIRST).values("pk")[:1]
    latest_ids = Project.objects.filter(pk__in=project_ids).annotate(latest=Subquery(latest)).values("latest")
    for run in FederatedRun.objects.filter(pk__in=latest_ids):
        stats[run.project_id].latest_run = run
    return stats


# ----------------------------------------------------------------- nodes and sessions
def project_nodes(*, project: Project) -> list[Node]:
    """The nodes taking part (approved joins), oldest first; pending and refused joins are in `joins`."""
    return list(Node.objects.approved().filter(project=project).order_by("created_at", "id"))


def project_sessions(*, project: Project, node_ids: frozenset[Any] | None = None) -> list[NodeSession]:
    """The project's newest sessions; `node_ids` limits them to those nodes (None: every node)."""
    sessions = NodeSession.objects.filter(node__project=project, node__join_status=JoinStatus.APPROVED)
    if node_ids is not None:
        sessions = sessions.filter(node_id__in=node_ids)
    return list(sessions.order_by(*NEWEST_FIRST)[:SESSIONS_SHOWN])


def joins(*, project: Project, statuses: tuple[str, ...]) -> list[Node]:
    """Participant nodes whose join is in one of `statuses`, oldest first."""
    return list(
        Node.objects.filter(project=project, role=NodeRole.PARTICIPANT, join_status__in=statuses).order_by(
            "created_at", "id"
        )
    )


def node_get(*, project: Project, node_id: Any) -> Node | None:
    return Node.objects.filter(project=project, pk=node_id).first()


# ----------------------------------------------------------------- runs
def run_active(*, project: Project) -> FederatedRun | None:
    """The project's live run (requested, starting, running or stopping): at most one, by constraint."""
    return FederatedRun.objects.live().filter(project=project).order_by(*LATEST_FIRST).first()


def runs_recent(*, project: Project, limit: int = RECENT_RUNS_SHOWN) -> list[FederatedRun]:
    return list(FederatedRun.objects.filter(project=project).order_by(*NEWEST_FIRST)[:limit])


_UUID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")


def _id_prefix(search: str) -> str | None:
    """A run id prefix as the database spells ids (hyphenated), whether typed with hyphens or not."""
    text = search.lower()
    if not _UUID_PREFIX.fullmatch(text):
        return None
    digits = text.replace("-", "")
    if not digits or len(digits) > 32:
        return None
    parts = [digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]]
    return "-".join(part for part in parts if part)


def runs_page(
    *,
    project: Project,
    statuses: tuple[str, ...] = (),
    search: str = "",
    limit: int,
    after: tuple[datetime, Any] | None = None,
) -> tuple[list[FederatedRun], bool]:
    """One page of the project's runs, newest created first: (runs, whether more follow).

    `after` is the (created_at, id) of the last run of the previous page (keyset paging: runs
    created meanwhile sort before it, so no page repeats or skips a row).
    """
    runs = FederatedRun.objects.filter(project=project)
    if statuses:
        runs = runs.filter(status__in=statuses)
    if search:
        matches = Q(label__icontains=search) | Q(federation_name__icontains=search) | Q(flower_run_id__icontains=search)
        prefix = _id_prefix(search)
        if prefix is not None:
            matches |= Q(id__startswith=prefix)
        runs = runs.filter(matches)
    if after is not None:
        created_at, run_id = after
        runs = runs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=run_id))
    rows = list(runs.order_by(*NEWEST_FIRST)[: limit + 1])
    return rows[:limit], len(rows) > limit


def run_get(*, project: Project, run_id: Any) -> FederatedRun | None:
    return FederatedRun.objects.select_related("coordinator_session__node").filter(project=project, pk=run_id).first()


def run_sessions(*, run: FederatedRun) -> tuple[NodeSession | None, list[NodeSession]]:
    """The run's coordinator session and, per participant node, its latest SuperNode session alive during the run.

    The coordinator session is the one the run was launched on; failing that, the latest SuperLink
    session alive during the run. Participants come in the order their nodes joined.
    """
    during = orchestration_selectors.sessions_during_run(run=run, slack=timedelta(0))
    during.sort(key=lambda s: (s.started_at, s.created_at), reverse=True)
    coordinator = run.coordinator_session
    if coordinator is None:
        coordinator = next(
            (s for s in during if s.kind == SessionKind.SUPERLINK and s.node.role == NodeRole.COORDINATOR), None
        )
    latest: dict[Any, NodeSession] = {}
    for session in during:
        node = session.node
        if (
            session.kind == SessionKind.SUPERNODE
            and node.role == NodeRole.PARTICIPANT
            and node.join_status == JoinStatus.APPROVED
        ):
            latest.setdefault(node.pk, session)
    participants = sorted(latest.values(), key=lambda s: (s.node.created_at, str(s.node.pk)))
    return coordinator, participants
