"""Reads of projects, nodes and people."""

from __future__ import annotations

from typing import Any

from accounts.models import Project


def project_get(*, project_id: Any) -> Project | None:
    return Project.objects.filter(pk=project_id).first()
