"""Reads of projects, nodes and people."""

from __future__ import annotations

from typing import Any

from accounts.models import Project
from accounts.permissions import ProjectScope


def project_get(*, project_id: Any, projects: ProjectScope) -> Project | None:
    """The project if it is one of `projects` (EVERY_PROJECT: any)."""
    found = Project.objects.filter(pk=project_id)
    if projects is not None:
        found = found.filter(pk__in=projects)
    return found.first()
