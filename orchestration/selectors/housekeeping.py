"""What `prune` may remove: Flower's scratch homes, idle app copies, old events and heartbeats."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from orchestration.models import (
    ENROLLMENT_LIVE_STATUSES,
    RUN_LIVE_STATUSES,
    SESSION_LIVE_STATUSES,
    EnrollmentStatus,
    FederatedRun,
    NodeEnrollment,
    NodeSession,
    ProjectEvent,
    SupervisorHeartbeat,
)

_HOME_NAME = re.compile(
    r"^(?P<kind>superlink|supernode|run|enrollment)-(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def flower_homes_prunable(*, before: datetime) -> list[Path]:
    """FLWR_HOME dirs of sessions, runs and enrollments that ended before `before`.

    Each holds Flower's scratch state (its config.toml and a copy of the app per run), never a
    record FedML needs. Untouched since `before` as well, so nothing live is ever picked.
    """
    root = Path(settings.FLWR_HOME_ROOT)
    if not root.is_dir():
        return []
    # Per kind of home: the rows that still need theirs (missing rows need nothing).
    still_needed: dict[str, QuerySet[Any]] = {
        "superlink": NodeSession.objects.exclude(ended_at__lt=before),
        "supernode": NodeSession.objects.exclude(ended_at__lt=before),
        "run": FederatedRun.objects.exclude(ended_at__lt=before),
        "enrollment": NodeEnrollment.objects.filter(
            status__in=(EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED)
        ),
    }
    candidates: dict[str, dict[str, Path]] = {kind: {} for kind in still_needed}
    for path in root.iterdir():
        match = _HOME_NAME.match(path.name)
        if match and path.is_dir() and not path.is_symlink() and _newest_mtime(path) < before.timestamp():
            candidates[match.group("kind")][match.group("id")] = path
    prunable: list[Path] = []
    for kind, paths in candidates.items():
        needed = {str(pk) for pk in still_needed[kind].filter(pk__in=list(paths)).values_list("pk", flat=True)}
        prunable += [path for key, path in paths.items() if key not in needed]
    return sorted(prunable)


def flower_app_copies_prunable(*, before: datetime) -> list[Path]:
    """App copies in the homes of live SuperLinks and SuperNodes, untouched since `before`.

    Flower installs the app once per run into the home of every process that runs it, and a
    site's SuperNode lives for months. Only while no run is live: an idle copy is not in use.
    """
    root = Path(settings.FLWR_HOME_ROOT)
    if not root.is_dir() or FederatedRun.objects.filter(status__in=RUN_LIVE_STATUSES).exists():
        return []
    live = NodeSession.objects.filter(status__in=SESSION_LIVE_STATUSES).values_list("kind", "pk")
    copies: list[Path] = []
    for kind, pk in live:
        apps = root / f"{kind}-{pk}" / "apps"
        if not apps.is_dir() or apps.is_symlink():
            continue
        for copy in apps.iterdir():
            idle = copy.is_dir() and not copy.is_symlink() and _newest_mtime(copy) < before.timestamp()
            if idle:
                copies.append(copy)
    return sorted(copies)


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def project_events_before(*, before: datetime) -> QuerySet[ProjectEvent]:
    return ProjectEvent.objects.filter(created_at__lt=before)


def supervisor_heartbeats_prunable(*, before: datetime) -> QuerySet[SupervisorHeartbeat]:
    """Heartbeats of supervisors gone since `before` that no live row still names (reconcile reads them)."""
    referenced = (
        set(NodeSession.objects.filter(status__in=SESSION_LIVE_STATUSES).values_list("supervisor_id", flat=True))
        | set(FederatedRun.objects.filter(status__in=RUN_LIVE_STATUSES).values_list("supervisor_id", flat=True))
        | set(
            NodeEnrollment.objects.filter(status__in=ENROLLMENT_LIVE_STATUSES).values_list("supervisor_id", flat=True)
        )
    )
    return SupervisorHeartbeat.objects.filter(beat_at__lt=before).exclude(pk__in=[i for i in referenced if i])
