"""Federated runs and their round metrics, and the supervisor's work queue of runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from accounts.permissions import ProjectScope
from orchestration.models import (
    RUN_LIVE_STATUSES,
    FederatedRun,
    NodeSession,
    Project,
    RoundMetric,
)
from orchestration.selectors.scope import within
from orchestration.selectors.supervisors import supervisors_alive


def run_live(*, project: Project) -> FederatedRun | None:
    return (
        FederatedRun.objects.select_related("coordinator_session")
        .filter(project=project, status__in=RUN_LIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def run_get(*, run_id: Any, projects: ProjectScope) -> FederatedRun | None:
    """The run if it belongs to one of `projects`. Interfaces pass the caller's; the supervisor,
    which serves every project, passes EVERY_PROJECT."""
    return (
        FederatedRun.objects.select_related("project", "coordinator_session")
        .filter(pk=run_id, **within("project_id", projects))
        .first()
    )


def run_latest(*, project: Project) -> FederatedRun | None:
    return FederatedRun.objects.filter(project=project).order_by("-created_at").first()


def round_metrics(*, run: FederatedRun) -> list[RoundMetric]:
    return list(RoundMetric.objects.filter(run=run).order_by("round", "phase"))


def runs_to_claim(*, project_slugs: tuple[str, ...] | None) -> list[FederatedRun]:
    return list(
        FederatedRun.objects.select_related("coordinator_session")
        .requested()
        .filter(**within("project__slug", project_slugs))
        .order_by("created_at")
    )


def runs_stop_requested(*, supervisor_id: Any) -> list[FederatedRun]:
    return list(FederatedRun.objects.stoppable().filter(supervisor_id=supervisor_id, stop_requested_at__isnull=False))


def orphaned_runs(*, project_slugs: tuple[str, ...] | None) -> list[FederatedRun]:
    alive = set(supervisors_alive().values_list("id", flat=True))
    rows = FederatedRun.objects.claimed().filter(**within("project__slug", project_slugs))
    return [row for row in rows if row.supervisor_id not in alive]


def run_status_and_end(*, run_id: Any) -> tuple[str, datetime | None] | None:
    """The run's status and end time, read without the row (websocket followers ask often)."""
    return FederatedRun.objects.filter(pk=run_id).values_list("status", "ended_at").first()


def run_live_on_superlink(*, superlink: NodeSession) -> FederatedRun | None:
    """The live run that uses this SuperLink, if any (a SuperLink stops after its run)."""
    return FederatedRun.objects.live().filter(coordinator_session=superlink).order_by("-created_at").first()
