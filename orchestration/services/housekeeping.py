"""FedML's own directories and pruning what only grows and is never a record."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import InvalidInput
from orchestration import selectors
from orchestration.private_files import private_dirs


def data_dirs_ensure() -> None:
    """FedML's directories, those it creates 0700 (ones an operator made are left as they are)."""
    for path in (
        settings.DATA_DIR,
        settings.LOG_DIR,
        settings.FLWR_HOME_ROOT,
        settings.ARTIFACTS_DIR,
        settings.CERTIFICATES_DIR,
    ):
        private_dirs(Path(path))


@dataclass(frozen=True)
class PruneReport:
    flower_dirs: list[Path]
    project_events: int
    supervisor_heartbeats: int


def history_prune(*, older_than: timedelta, dry_run: bool = False) -> PruneReport:
    """Remove what only grows and is never a record: Flower's scratch homes of ended processes,
    the app copies (one per run) in the homes of live ones while no run is live, project events
    (notifications; the rows they announce stay) and heartbeats of long-gone supervisors.

    Log lines, runs, sessions and round metrics are the record and are never pruned here.
    """
    if older_than < timedelta(hours=1):
        raise InvalidInput("older_than must be at least one hour", field="older_than")
    before = timezone.now() - older_than
    dirs = selectors.flower_homes_prunable(before=before) + selectors.flower_app_copies_prunable(before=before)
    events = selectors.project_events_before(before=before)
    heartbeats = selectors.supervisor_heartbeats_prunable(before=before)
    if dry_run:
        return PruneReport(flower_dirs=dirs, project_events=events.count(), supervisor_heartbeats=heartbeats.count())
    root = Path(settings.FLWR_HOME_ROOT).resolve()
    for path in dirs:
        if path.resolve().is_relative_to(root):  # never follow anything out of FedML's own directory
            shutil.rmtree(path, ignore_errors=True)
    with transaction.atomic():
        event_count = events.delete()[0]
        heartbeat_count = heartbeats.delete()[0]
    return PruneReport(flower_dirs=dirs, project_events=event_count, supervisor_heartbeats=heartbeat_count)
