"""Nodes and their SuperNode key enrollments."""

from __future__ import annotations

from typing import Any

from accounts.permissions import ProjectScope
from orchestration.models import (
    EnrollmentStatus,
    Node,
    NodeEnrollment,
)
from orchestration.selectors.scope import within


def enrollments_pending(*, project_slugs: tuple[str, ...] | None) -> list[NodeEnrollment]:
    return list(
        NodeEnrollment.objects.select_related("node")
        .filter(
            **within("node__project__slug", project_slugs),
            supervisor_id__isnull=True,
            status__in=(EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED),
        )
        .order_by("created_at")
    )


def node_get(*, node_id: Any, projects: ProjectScope) -> Node | None:
    """The node if it belongs to one of `projects` (the caller's; EVERY_PROJECT: any)."""
    return Node.objects.select_related("project").filter(pk=node_id, **within("project_id", projects)).first()
