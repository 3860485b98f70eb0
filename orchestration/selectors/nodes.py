"""Nodes and their SuperNode key enrollments."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.db.models import Prefetch

from accounts.models import JoinStatus, NodeRole
from accounts.permissions import ProjectScope
from orchestration.models import (
    EnrollmentStatus,
    FederatedRun,
    Node,
    NodeEnrollment,
    NodeSession,
    SessionKind,
    SessionStatus,
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


def nodes_not_connected(*, run: FederatedRun, connected: Collection[str]) -> list[str]:
    """The run's project's participant nodes that are not among Flower's `connected` node ids, by name.

    A node with a registered SuperNode key is connected when its Flower node id is; a node
    without one (no SuperNode authentication) counts as connected while a SuperNode of it runs.
    """
    nodes = (
        Node.objects.filter(project_id=run.project_id, role=NodeRole.PARTICIPANT, join_status=JoinStatus.APPROVED)
        .prefetch_related(
            Prefetch(
                "enrollments",
                queryset=NodeEnrollment.objects.filter(status=EnrollmentStatus.REGISTERED).exclude(flower_node_id=""),
                to_attr="registered",
            ),
            Prefetch(
                "sessions",
                queryset=NodeSession.objects.filter(kind=SessionKind.SUPERNODE, status=SessionStatus.RUNNING),
                to_attr="running",
            ),
        )
        .order_by("external_id")
    )
    missing = []
    for node in nodes:
        ids = {enrollment.flower_node_id for enrollment in node.registered}
        present = bool(ids & set(connected)) if ids else bool(node.running)
        if not present:
            missing.append(node.display_name or node.external_id)
    return missing
