"""Query-string parameters of the dashboard's data API, checked: a bad one is a 400 naming it."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from django.http import QueryDict

from accounts.models import JoinStatus
from core.errors import InvalidInput
from core.fields import parse_count
from orchestration.models import FederatedRun, RunStatus

LIMIT_DEFAULT = 25
LIMIT_MAX = 200
SEARCH_MAX = 200
CURSOR_MAX = 200


def project_id(params: QueryDict) -> uuid.UUID:
    value = params.get("projectId", "").strip()
    if not value:
        raise InvalidInput("projectId query parameter is required", field="projectId")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"projectId must be a UUID, got {value[:40]!r}", field="projectId") from None


def choices(params: QueryDict, *, field: str, allowed: list[str], default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """One or more values, repeated (`?status=a&status=b`) or comma-separated (`?status=a,b`)."""
    values: list[str] = []
    for raw in params.getlist(field):
        for value in raw.split(","):
            value = value.strip()
            if not value:
                continue
            if value not in allowed:
                raise InvalidInput(f"{field} must be one of {', '.join(allowed)}, got {value[:40]!r}", field=field)
            if value not in values:
                values.append(value)
    return tuple(values) or default


def run_statuses(params: QueryDict) -> tuple[str, ...]:
    return choices(params, field="status", allowed=list(RunStatus.values))


def join_statuses(params: QueryDict) -> tuple[str, ...]:
    return choices(params, field="status", allowed=list(JoinStatus.values), default=(JoinStatus.PENDING,))


def limit(params: QueryDict) -> int:
    value = params.get("limit")
    if value is None:
        return LIMIT_DEFAULT
    count = parse_count(value, field="limit", minimum=1)
    if count > LIMIT_MAX:
        raise InvalidInput(f"limit must be at most {LIMIT_MAX}, got {count}", field="limit")
    return count


def search(params: QueryDict) -> str:
    value = params.get("search", "").strip()
    if len(value) > SEARCH_MAX:
        raise InvalidInput(f"search must be at most {SEARCH_MAX} characters", field="search")
    if "\x00" in value:
        raise InvalidInput("search must not contain NUL", field="search")
    return value


# ----------------------------------------------------------------- cursors
def cursor_for(run: FederatedRun) -> str:
    """An opaque cursor: the (created_at, id) of the last run of a page."""
    raw = json.dumps([run.created_at.isoformat(), str(run.id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor(params: QueryDict) -> tuple[datetime, uuid.UUID] | None:
    value = params.get("cursor")
    if value is None or value == "":
        return None
    bad = InvalidInput("cursor is not one this API handed out (use nextCursor as given)", field="cursor")
    if len(value) > CURSOR_MAX:
        raise bad
    try:
        decoded: Any = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        stamp, run_id = decoded
        created_at = datetime.fromisoformat(stamp)
        key = uuid.UUID(run_id)
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise bad from None
    if created_at.tzinfo is None:
        raise bad
    return created_at, key
