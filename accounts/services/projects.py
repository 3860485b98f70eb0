"""Projects, their nodes, explicit grants and joins."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import JoinPolicy, JoinStatus, Membership, Node, NodeRole, Person, Project, UserRole
from accounts.services.audit import audit_record
from core.errors import Conflict, Forbidden, InvalidInput


@transaction.atomic
def membership_set(
    *, user: AbstractBaseUser, project: Project, role: str, node: Node | None, actor: Any, via: str
) -> Membership:
    """Give a user a role in a project (a participant is bound to one of the project's nodes)."""
    if role not in NodeRole.values:
        raise InvalidInput(f"role must be one of {', '.join(NodeRole.values)}", field="role")
    if role == NodeRole.PARTICIPANT and (node is None or node.project_id != project.pk):
        raise InvalidInput("a participant must be bound to one of the project's nodes", field="node")
    if role == NodeRole.COORDINATOR and node is not None and node.role != NodeRole.COORDINATOR:
        raise Conflict("a coordinator cannot be bound to a participant node", field="node")
    membership, _ = Membership.objects.update_or_create(
        user=user, project=project, defaults={"role": role, "node": node if role == NodeRole.PARTICIPANT else node}
    )
    audit_record(actor=actor, action="role.set", outcome="ok", target=f"{user} {role} of {project.slug}", via=via)
    return membership


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


def coordinator_node_ensure(*, project: Project | None = None) -> Node:
    """The configured coordinator node (COORDINATOR_NODE_ID) of the default project; pass the
    default project when the caller already holds it."""
    project = project or project_ensure_default()
    return _node_ensure(
        project=project,
        external_id=settings.COORDINATOR_NODE_ID,
        role=NodeRole.COORDINATOR,
        display_name=settings.COORDINATOR_NODE_NAME,
    )


def participant_node_ensure(*, project: Project | None = None) -> Node:
    project = project or project_ensure_default()
    return _node_ensure(
        project=project,
        external_id=settings.PARTICIPANT_NODE_ID,
        role=NodeRole.PARTICIPANT,
        display_name=settings.PARTICIPANT_NODE_NAME,
    )


# ----------------------------------------------------------------- many projects
SLUG_MAX = 100
IDENTIFIER_MAX = 200


def slug_from(value: str) -> str:
    """The dashboard's rule: lowercase, only [a-z0-9-], spaces to hyphens, no leading/trailing hyphen."""
    value = re.sub(r"[^a-z0-9\s-]", "", value.lower().strip())
    value = re.sub(r"-+", "-", re.sub(r"\s+", "-", value)).strip("-")
    return value[:SLUG_MAX].strip("-")


def identifier_from(value: str) -> str:
    value = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", value.strip().lower())).strip("-")
    return value[:IDENTIFIER_MAX].strip("-")


def _unique(model: type[Project] | type[Node], column: str, base: str, fallback: str) -> str:
    candidate = base or f"{fallback}-{secrets.token_hex(3)}"
    attempt = 1
    while model.objects.filter(**{column: candidate}).exists():
        candidate = f"{base}-{attempt}" if base else f"{fallback}-{secrets.token_hex(3)}"
        attempt += 1
    return candidate


def _text(value: str | None, *, field: str, limit: int, required: bool = False) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise InvalidInput(f"{field} is required", field=field)
    if len(text) > limit:
        raise InvalidInput(f"{field} must be at most {limit} characters", field=field)
    if "\x00" in text:
        raise InvalidInput(f"{field} must not contain NUL", field=field)
    return text or None


def project_create(
    *,
    owner: Person,
    name: str,
    slug: str | None = None,
    description: str | None = None,
    coordinator_display_name: str | None = None,
    coordinator_external_id: str | None = None,
    join_policy: str = JoinPolicy.OPEN,
    actor: Any,
    via: str,
) -> tuple[Project, Node]:
    """A project and its coordinator node, both owned by `owner`. Slugs and external ids are made unique."""
    clean_name = _text(name, field="name", limit=200, required=True)
    assert clean_name is not None
    clean_description = _text(description, field="description", limit=5000)
    display = _text(coordinator_display_name, field="coordinator_display_name", limit=200)
    external = _text(coordinator_external_id, field="coordinator_external_id", limit=IDENTIFIER_MAX)
    if slug is not None and not isinstance(slug, str):
        raise InvalidInput("slug must be a string", field="slug")
    if join_policy not in JoinPolicy.values:
        raise InvalidInput(f"join_policy must be one of {', '.join(JoinPolicy.values)}", field="join_policy")
    if settings.PROJECT_CREATORS == "admin" and owner.role != UserRole.ADMIN:
        raise Forbidden("only admins may create projects here (FEDML_PROJECT_CREATORS=admin)")
    for _ in range(5):  # a concurrent create may take the same slug between the check and the insert
        project_slug = _unique(Project, "slug", slug_from((slug or "").strip() or clean_name), "project")
        node_id = _unique(
            Node,
            "external_id",
            identifier_from(external or f"{project_slug}-coordinator"),
            f"{project_slug}-coordinator",
        )
        try:
            with transaction.atomic():
                project = Project.objects.create(
                    name=clean_name,
                    slug=project_slug,
                    description=clean_description,
                    created_by=owner,
                    join_policy=join_policy,
                )
                node = Node.objects.create(
                    project=project,
                    user=owner,
                    external_id=node_id,
                    role=NodeRole.COORDINATOR,
                    display_name=display or f"{clean_name} Coordinator",
                    metadata={"registered_via": "admin_portal", "created_at": timezone.now().isoformat()},
                )
                audit_record(actor=actor, action="project.create", outcome="ok", target=project.slug, via=via)
                return project, node
        except IntegrityError:
            continue
    raise Conflict("could not find a free slug or external id; try another name", field="slug")


def project_join(
    *,
    project: Project,
    person: Person,
    display_name: str | None = None,
    external_id: str | None = None,
    actor: Any,
    via: str,
) -> tuple[Node, bool]:
    """Join a project as a participant: (the person's node, whether it was already registered).

    Idempotent. Under the approval policy the node waits, `pending`, for a coordinator.
    """
    display = _text(display_name, field="display_name", limit=200)
    external = _text(external_id, field="external_id", limit=IDENTIFIER_MAX)
    for _ in range(5):
        existing = Node.objects.filter(project=project, user=person).order_by("role", "created_at").first()
        if existing is not None:
            return existing, True
        base = identifier_from(external or f"{project.slug}-participant-{str(person.pk)[:6]}")
        node_id = _unique(Node, "external_id", base, f"{project.slug}-participant")
        pending = project.join_policy == JoinPolicy.APPROVAL
        try:
            with transaction.atomic():
                node = Node.objects.create(
                    project=project,
                    user=person,
                    external_id=node_id,
                    role=NodeRole.PARTICIPANT,
                    display_name=display or person.display_name or person.email or f"{project.name} participant",
                    join_status=JoinStatus.PENDING if pending else JoinStatus.APPROVED,
                    metadata={
                        "registered_via": "client_portal",
                        "created_at": timezone.now().isoformat(),
                        "user_email": person.email,
                    },
                )
                audit_record(
                    actor=actor,
                    action="project.join",
                    outcome="ok",
                    target=f"{project.slug} {node.external_id}",
                    via=via,
                    detail={"join_status": node.join_status},
                )
                return node, False
        except IntegrityError:
            continue  # a concurrent join (same person) or the same external id: look again
    raise Conflict("could not register a node; try again", field="external_id")


def node_join_decide(*, node: Node, approve: bool, actor: Any, via: str) -> Node:
    """A coordinator approves or refuses a pending join."""
    if node.role != NodeRole.PARTICIPANT:
        raise InvalidInput("only participant nodes join", field="node_id")
    status = JoinStatus.APPROVED if approve else JoinStatus.REFUSED
    updated = Node.objects.filter(pk=node.pk, join_status=JoinStatus.PENDING).update(
        join_status=status, updated_at=timezone.now()
    )
    if not updated:
        node.refresh_from_db()
        if node.join_status != status:
            raise Conflict(f"this join is already {node.join_status}", field="node_id")
        return node
    audit_record(
        actor=actor, action="project.join_decide", outcome="ok", target=f"{node.external_id} {status}", via=via
    )
    node.refresh_from_db()
    return node
