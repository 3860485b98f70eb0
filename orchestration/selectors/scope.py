"""A supervisor's scope as a filter: None serves everything (one host runs every project)."""

from __future__ import annotations

from typing import Any


def within(lookup: str, values: tuple[str, ...] | None) -> dict[str, Any]:
    return {} if values is None else {f"{lookup}__in": values}
