"""The one place that says who may see and do what, in which project.

A person's standing in a project comes from the nodes they own there (the owner of a coordinator
node is a coordinator; the owner of an approved participant node is that node's participant) and
from explicit grants (Membership, set in the admin). Staff see and do everything. A coordinator
sees and controls everything in its project. A participant sees its project, its runs and their
aggregated metrics, and only its own nodes' sessions; it controls only its own nodes' SuperNodes.
Used by DRF, the consumers, the admin and the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accounts.models import Membership, Node, NodeRole, Project


@dataclass(frozen=True)
class Standing:
    coordinator: bool
    participant_node_ids: frozenset[Any]

    @property
    def role(self) -> str:
        return NodeRole.COORDINATOR if self.coordinator else NodeRole.PARTICIPANT


def is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and (user.is_staff or user.is_superuser))


def _fold(roles: list[tuple[str, Any]]) -> Standing | None:
    coordinator = any(role == NodeRole.COORDINATOR for role, _ in roles)
    nodes = frozenset(node for role, node in roles if role == NodeRole.PARTICIPANT and node is not None)
    return Standing(coordinator, nodes) if coordinator or nodes else None


def _roles(user: Any, **project: Any) -> Any:
    """One query: explicit grants, and the approved nodes the user owns: (project, role, node)."""
    granted = Membership.objects.filter(user=user, **project).order_by().values_list("project_id", "role", "node_id")
    owned = Node.objects.approved().filter(user__django_user=user, **project).order_by()
    return granted.union(owned.values_list("project_id", "role", "pk"), all=True)


def standing(user: Any, project_id: Any) -> Standing | None:
    """The user's standing in a project, or None. Cached on the user object (one request)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cache: dict[str, Standing | None] = user.__dict__.setdefault("_fedml_standing", {})
    key = str(project_id)
    if key not in cache:
        cache[key] = _fold([(role, node) for _, role, node in _roles(user, project_id=project_id)])
    return cache[key]


def standings(user: Any) -> dict[Any, Standing]:
    """The user's standing in every project where it has one (project id -> Standing), in one query."""
    if not getattr(user, "is_authenticated", False):
        return {}
    by_project: dict[Any, list[tuple[str, Any]]] = {}
    for project_id, role, node in _roles(user):
        by_project.setdefault(project_id, []).append((role, node))
    found = {project_id: _fold(roles) for project_id, roles in by_project.items()}
    return {project_id: value for project_id, value in found.items() if value is not None}


# The projects whose records a caller may look up by id: their ids, or EVERY_PROJECT (staff, and
# the trusted callers: the supervisor and management commands). Every selector that takes an id
# takes one, so another project's record is simply not found.
ProjectScope = frozenset[Any] | None
EVERY_PROJECT: ProjectScope = None


def visible_project_ids(user: Any) -> ProjectScope:
    """The projects whose records `user` may look up by id: every one for staff, else those it stands in."""
    if is_staff(user):
        return EVERY_PROJECT
    found = standings(user)
    if found:  # the role checks that follow the lookup read these: no query of their own
        cache: dict[str, Standing | None] = user.__dict__.setdefault("_fedml_standing", {})
        for project_id, value in found.items():
            cache.setdefault(str(project_id), value)
    return frozenset(found)


def can_view_project(user: Any, project: Project) -> bool:
    return is_staff(user) or standing(user, project.pk) is not None


def can_view_session(user: Any, session: Any) -> bool:
    """`session`: a node session (anything with `node`); kept untyped so accounts needs no orchestration import."""
    if is_staff(user):
        return True
    found = standing(user, session.node.project_id)
    return found is not None and (found.coordinator or session.node_id in found.participant_node_ids)


def can_view_run(user: Any, run: Any) -> bool:
    """`run`: a federated run (anything with `project_id`)."""
    return is_staff(user) or standing(user, run.project_id) is not None


def can_view_per_node_metrics(user: Any, project: Project) -> bool:
    if is_staff(user):
        return True
    found = standing(user, project.pk)
    return found is not None and found.coordinator


def visible_node_ids(user: Any, project: Project) -> frozenset[Any] | None:
    """None: sees every node's sessions; otherwise the nodes whose sessions it may see."""
    if is_staff(user):
        return None
    found = standing(user, project.pk)
    if found is None:
        return frozenset()
    return None if found.coordinator else found.participant_node_ids


def membership_role(user: Any, project: Project) -> str | None:
    found = standing(user, project.pk)
    return found.role if found else None


def can_control_federation(user: Any, project: Project) -> bool:
    """SuperLink, runs, enrollments and joins: staff or the project's coordinators."""
    return is_staff(user) or membership_role(user, project) == NodeRole.COORDINATOR


def can_view_node(user: Any, node: Node) -> bool:
    if is_staff(user):
        return True
    found = standing(user, node.project_id)
    return found is not None and (found.coordinator or node.pk in found.participant_node_ids)


def can_control_node(user: Any, node: Node) -> bool:
    """A node's SuperNodes: staff or the participant of that node (never another site)."""
    if is_staff(user):
        return True
    found = standing(user, node.project_id)
    return found is not None and node.pk in found.participant_node_ids


def coordinates(user: Any, project: Project) -> bool:
    """The admin's rule, where everyone is staff: superusers, and the coordinators of `project`."""
    if getattr(user, "is_superuser", False):
        return True
    found = standing(user, project.pk)
    return found is not None and found.coordinator


def coordinated_project_ids(user: Any) -> set[Any] | None:
    """The projects `user` coordinates (None: every project, for a superuser). Cached on the user (one request)."""
    if getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False):  # the admin's login page lists apps too
        return set()
    if "_fedml_coordinated" not in user.__dict__:
        user.__dict__["_fedml_coordinated"] = {
            project for project, found in standings(user).items() if found.coordinator
        }
    return user.__dict__["_fedml_coordinated"]
