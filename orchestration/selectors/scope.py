"""A scope as a filter: a supervisor's (project slugs, node ids) or a caller's (project ids).
None is everything (one supervisor serves every project; staff see every project)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def within(lookup: str, values: Collection[Any] | None) -> dict[str, Any]:
    return {} if values is None else {f"{lookup}__in": values}
