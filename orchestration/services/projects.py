"""The deployment's default project and its coordinator and participant nodes, created on first use."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError

from orchestration.models import (
    Node,
    NodeRole,
    Project,
)


def project_ensure_default() -> Project:
    """The configured project (PROJECT_SLUG), created on first use."""
    try:
        project, _ = Project.objects.get_or_create(slug=settings.PROJECT_SLUG, defaults={"name": settings.PROJECT_NAME})
    except IntegrityError:  # another worker created it first
        project = Project.objects.get(slug=settings.PROJECT_SLUG)
    return project


def _node_ensure(*, project: Project, external_id: str, role: str, display_name: str) -> Node:
    try:
        node, _ = Node.objects.get_or_create(
            external_id=external_id, defaults={"project": project, "role": role, "display_name": display_name}
        )
    except IntegrityError:
        node = Node.objects.get(external_id=external_id)
    return node


def coordinator_node_ensure() -> Node:
    project = project_ensure_default()
    return _node_ensure(
        project=project,
        external_id=settings.COORDINATOR_NODE_ID,
        role=NodeRole.COORDINATOR,
        display_name=settings.COORDINATOR_NODE_NAME,
    )


def participant_node_ensure() -> Node:
    project = project_ensure_default()
    return _node_ensure(
        project=project,
        external_id=settings.PARTICIPANT_NODE_ID,
        role=NodeRole.PARTICIPANT,
        display_name=settings.PARTICIPANT_NODE_NAME,
    )
