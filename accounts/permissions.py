"""The one place that says who may see which session, run and project.

Used by websocket consumers now; the security issue routes the API and the admin through it too.
Staff see everything. A coordinator member sees everything in its project. A participant member
sees its own node's sessions, the runs of its project and their aggregated metrics only.
"""

from __future__ import annotations

from typing import Any

from accounts.models import Membership, Node, NodeRole, Project


def _membership(user: Any, project_id: Any) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, project_id=project_id).first()


def is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and (user.is_staff or user.is_superuser))


def can_view_project(user: Any, project: Project) -> bool:
    return is_staff(user) or _membership(user, project.pk) is not None


def can_view_session(user: Any, session: Any) -> bool:
    """`session`: a node session (anything with `node`); kept untyped so accounts needs no orchestration import."""
    if is_staff(user):
        return True
    membership = _membership(user, session.node.project_id)
    if membership is None:
        return False
    return membership.role == NodeRole.COORDINATOR or membership.node_id == session.node_id


def can_view_run(user: Any, run: Any) -> bool:
    """`run`: a federated run (anything with `project`)."""
    return can_view_project(user, run.project)


def can_view_per_node_metrics(user: Any, project: Project) -> bool:
    if is_staff(user):
        return True
    membership = _membership(user, project.pk)
    return membership is not None and membership.role == NodeRole.COORDINATOR


def visible_node_id(user: Any, project: Project) -> Any | None:
    """None: sees every node's sessions; otherwise the one node whose sessions it may see."""
    if is_staff(user):
        return None
    membership = _membership(user, project.pk)
    if membership is None or membership.role == NodeRole.COORDINATOR:
        return None
    return membership.node_id


def membership_role(user: Any, project: Project) -> str | None:
    membership = _membership(user, project.pk)
    return membership.role if membership else None


def can_control_federation(user: Any, project: Project) -> bool:
    """SuperLink, runs and enrollments: staff or the project's coordinators."""
    return is_staff(user) or membership_role(user, project) == NodeRole.COORDINATOR


def can_view_node(user: Any, node: Node) -> bool:
    if is_staff(user):
        return True
    membership = _membership(user, node.project_id)
    if membership is None:
        return False
    return membership.role == NodeRole.COORDINATOR or membership.node_id == node.pk


def can_control_node(user: Any, node: Node) -> bool:
    """A node's SuperNodes: staff or the participant bound to that node (never another site)."""
    if is_staff(user):
        return True
    membership = _membership(user, node.project_id)
    return membership is not None and membership.role == NodeRole.PARTICIPANT and membership.node_id == node.pk
