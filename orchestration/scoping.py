"""Which project and node a control request is about, from its body or query and the caller.

The dashboard names them (`project_id`, `node_id` / `coordinator_node_id`, `user_id`); scripts
and the commands may name nothing. Named ids are checked against the caller: a project or node
the caller may not see is "not found", one it may see but not control is 403, and `user_id`
must be the caller's own. Unnamed, the caller's project is, in order: the one whose SuperLink
(coordinator) or SuperNode (participant) is live; the default project (PROJECT_SLUG) if the
caller holds the role there (staff always do); the caller's newest project with that role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from accounts import permissions
from accounts import selectors as accounts_selectors
from accounts import services as accounts_services
from accounts.models import JoinStatus, Membership, Node, NodeRole, Project
from accounts.services.people import person_of
from core.errors import Forbidden, InvalidInput, NotFound
from orchestration import selectors
from orchestration.models import NodeSession, SessionKind
from orchestration.states import SESSION_LIVE_STATUSES


@dataclass(frozen=True)
class Scope:
    project: Project
    node: Node


def _uuid(value: Any, *, field: str) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{field} must be a UUID", field=field) from None


def check_user_id(user: Any, user_id: Any) -> None:
    """`user_id` in a body is never trusted: it must be the caller's own id."""
    wanted = _uuid(user_id, field="user_id")
    if wanted is None:
        return
    person = person_of(user)
    if person is None or person.pk != wanted:
        raise Forbidden("user_id must be your own user id", field="user_id")


def _visible_project(user: Any, project_id: uuid.UUID, *, field: str) -> Project:
    project = accounts_selectors.project_get(project_id=project_id, projects=permissions.visible_project_ids(user))
    if project is None:
        raise NotFound(f"project {project_id} not found", field=field)
    return project


def _visible_node(user: Any, node_id: uuid.UUID, role: str) -> Node | None:
    """A node of `role` in one of the caller's projects (another project's is not found)."""
    node = selectors.node_get(node_id=node_id, projects=permissions.visible_project_ids(user))
    return node if node is not None and node.role == role else None


def _caller_nodes(user: Any, role: str) -> Any:
    """The nodes whose role the caller holds: owned and approved, or granted."""
    granted = Membership.objects.filter(user=user, role=role)
    if role == NodeRole.COORDINATOR:
        return Node.objects.filter(role=role).filter(
            Q(user__django_user=user, join_status=JoinStatus.APPROVED) | Q(project__in=granted.values("project"))
        )
    return Node.objects.filter(role=role).filter(
        Q(user__django_user=user, join_status=JoinStatus.APPROVED) | Q(pk__in=granted.values("node"))
    )


def _pick(nodes: Any, kind: str) -> Node | None:
    """One query: the caller's node with a live session of `kind`, else one in the default
    project, else the newest."""
    live = NodeSession.objects.filter(node=OuterRef("pk"), kind=kind, status__in=SESSION_LIVE_STATUSES)
    ranked = list(nodes.select_related("project").annotate(live=Exists(live)).order_by("-created_at")[:50])
    return (
        next((node for node in ranked if node.live), None)
        or next((node for node in ranked if node.project.slug == settings.PROJECT_SLUG), None)
        or (ranked[0] if ranked else None)
    )


# ----------------------------------------------------------------- coordinator side
def _coordinator_node_of(user: Any, project: Project) -> Node:
    if project.slug == settings.PROJECT_SLUG:
        return accounts_services.coordinator_node_ensure(project=project)
    nodes = Node.objects.filter(project=project, role=NodeRole.COORDINATOR).order_by("created_at")
    return nodes.filter(user__django_user=user).first() or nodes.first() or _no_coordinator(project)


def _no_coordinator(project: Project) -> Node:
    raise NotFound(f"project {project.slug} has no coordinator node", field="project_id")


def coordinator_scope(
    *, user: Any, project_id: Any = None, node_id: Any = None, control: bool, node_field: str = "node_id"
) -> Scope | None:
    """The project and coordinator node a coordinator request is about.

    None when nothing is named and the caller coordinates no project (health answers "nothing").
    """
    pid = _uuid(project_id, field="project_id")
    nid = _uuid(node_id, field=node_field)
    project = _visible_project(user, pid, field="project_id") if pid else None
    node = None
    if nid is not None:
        node = _visible_node(user, nid, NodeRole.COORDINATOR)
        if node is None or (project is not None and node.project_id != project.pk):
            raise NotFound(f"coordinator node {nid} not found in this project", field=node_field)
        project = project or node.project
    if project is None:
        if permissions.is_staff(user):
            project = accounts_services.project_ensure_default()
        else:
            picked = _pick(_caller_nodes(user, NodeRole.COORDINATOR), SessionKind.SUPERLINK)
            project = picked.project if picked else None
        if project is None and not control:  # a participant reads its own project's state
            site = site_scope(user=user, control=False)
            project = site.project if site else None
        if project is None:
            if control:
                raise Forbidden("you coordinate no project: create one, or name it with project_id")
            return None
    if control and not permissions.can_control_federation(user, project):
        raise Forbidden("only the project's coordinators may control the SuperLink, runs and enrollments")
    if not control and not permissions.can_view_project(user, project):
        raise Forbidden("only members of the project may see this")
    return Scope(project=project, node=node or _coordinator_node_of(user, project))


# ----------------------------------------------------------------- participant side
def site_scope(*, user: Any, project_id: Any = None, node_id: Any = None, control: bool) -> Scope | None:
    """The project and participant node a participant request is about (None: the caller has none)."""
    pid = _uuid(project_id, field="project_id")
    nid = _uuid(node_id, field="node_id")
    if pid and Node.objects.filter(project_id=pid, user__django_user=user, join_status=JoinStatus.PENDING).exists():
        raise Forbidden("your join of this project waits for a coordinator's approval", field="project_id")
    project = _visible_project(user, pid, field="project_id") if pid else None
    if nid is not None:
        node = _visible_node(user, nid, NodeRole.PARTICIPANT)
        if node is None or (project is not None and node.project_id != project.pk):
            raise NotFound(f"participant node {nid} not found in this project", field="node_id")
        if not permissions.can_view_node(user, node):
            raise NotFound(f"participant node {nid} not found in this project", field="node_id")
    elif project is not None:
        node = _site_node_in(user, project)
    elif permissions.is_staff(user):
        node = accounts_services.participant_node_ensure()
    else:
        node = _pick(_caller_nodes(user, NodeRole.PARTICIPANT), SessionKind.SUPERNODE)
        if node is None:
            if control:
                raise Forbidden("you take part in no project: join one, or name it with project_id")
            return None
    if control and not permissions.can_control_node(user, node):
        raise Forbidden("only this site's participant may control its SuperNodes")
    if not control and not permissions.can_view_node(user, node):
        raise Forbidden("only this site's participant or the project's coordinators may see this")
    return Scope(project=node.project, node=node)


def _site_node_in(user: Any, project: Project) -> Node:
    """The caller's own participant node in `project`. On the default project, staff (and members
    without a node of their own) act on the configured site node. A pending join was refused earlier."""
    node = _caller_nodes(user, NodeRole.PARTICIPANT).filter(project=project).order_by("-created_at").first()
    if project.slug == settings.PROJECT_SLUG and (permissions.is_staff(user) or node is None):
        return accounts_services.participant_node_ensure(project=project)
    if node is None:
        raise Forbidden("you have no node in this project: join it first", field="project_id")
    return node


def default_project(user: Any) -> tuple[Project, Node | None] | None:
    """The default project (PROJECT_SLUG) and its coordinator node, if the caller may see it."""
    if permissions.is_staff(user):
        return accounts_services.project_ensure_default(), accounts_services.coordinator_node_ensure()
    project = Project.objects.filter(slug=settings.PROJECT_SLUG).first()
    if project is None or not permissions.can_view_project(user, project):
        return None
    node = Node.objects.filter(project=project, external_id=settings.COORDINATOR_NODE_ID).first()
    return project, node
