"""Federated runs and their round metrics, and the supervisor's work queue of runs."""

from __future__ import annotations

from typing import Any

from orchestration.models import (
    RUN_LIVE_STATUSES,
    FederatedRun,
    Project,
    RoundMetric,
)
from orchestration.selectors.supervisors import supervisors_alive


def run_live(*, project: Project) -> FederatedRun | None:
    return (
        FederatedRun.objects.select_related("coordinator_session")
        .filter(project=project, status__in=RUN_LIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def run_get(*, run_id: Any) -> FederatedRun | None:
    return FederatedRun.objects.select_related("project", "coordinator_session").filter(pk=run_id).first()


def run_latest(*, project: Project) -> FederatedRun | None:
    return FederatedRun.objects.filter(project=project).order_by("-created_at").first()


def round_metrics(*, run: FederatedRun) -> list[RoundMetric]:
    return list(RoundMetric.objects.filter(run=run).order_by("round", "phase"))


def runs_to_claim(*, project_ids: list[Any]) -> list[FederatedRun]:
    return list(
        FederatedRun.objects.select_related("coordinator_session")
        .filter(project_id__in=project_ids, status="requested")
        .order_by("created_at")
    )


def runs_stop_requested(*, supervisor_id: Any) -> list[FederatedRun]:
    return list(
        FederatedRun.objects.filter(
            supervisor_id=supervisor_id, stop_requested_at__isnull=False, status__in=("starting", "running")
        )
    )


def orphaned_runs(*, project_ids: list[Any]) -> list[FederatedRun]:
    alive = set(supervisors_alive().values_list("id", flat=True))
    rows = FederatedRun.objects.filter(project_id__in=project_ids, status__in=("starting", "running", "stopping"))
    return [row for row in rows if row.supervisor_id not in alive]
