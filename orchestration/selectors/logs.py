"""Log lines of a session or run, paged by sequence number."""

from __future__ import annotations

from typing import Any

from django.db.models import Max

from orchestration.models import (
    FederatedRun,
    LogLine,
    NodeSession,
)


def log_lines_after(
    *, session: NodeSession | None = None, run: FederatedRun | None = None, after: int = 0, limit: int = 1000
) -> list[LogLine]:
    owner = {"session": session} if session is not None else {"run": run}
    return list(LogLine.objects.filter(**owner, seq__gt=after).order_by("seq")[:limit])


def log_lines_before(
    *, session: NodeSession | None = None, run: FederatedRun | None = None, before: int, limit: int = 500
) -> list[LogLine]:
    owner = {"session": session} if session is not None else {"run": run}
    newest_first = LogLine.objects.filter(**owner, seq__lt=before).order_by("-seq")[:limit]
    return list(reversed(newest_first))


def log_last_seq(*, session_id: Any = None, run_id: Any = None) -> int:
    owner = {"session_id": session_id} if session_id is not None else {"run_id": run_id}
    return LogLine.objects.filter(**owner).aggregate(m=Max("seq"))["m"] or 0
