"""Writes for projects and their nodes, identities, roles, tokens and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiToken, AuditEvent, Membership, Node, NodeRole, Project
from core.errors import Conflict, InvalidInput, NotFound

TOKEN_PREFIX = "fedml"
TOKEN_PREFIX_RE = re.compile(r"[0-9a-f]{12}")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _storable(value: Any, limit: int = 2000) -> Any:
    """What a hostile request put in an audit record, made storable anywhere: PostgreSQL refuses
    NUL in text and jsonb, and lone surrogates cannot be encoded as UTF-8."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")[:limit]
    if isinstance(value, dict):
        return {_storable(str(key), 200): _storable(item, limit) for key, item in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_storable(item, limit) for item in value[:50]]
    return value


def audit_record(
    *,
    actor: Any,
    action: str,
    outcome: str,
    target: str = "",
    remote_addr: str = "",
    via: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    user = actor if getattr(actor, "is_authenticated", False) else None
    label = str(actor) if isinstance(actor, str) else (user.get_username() if user else "anonymous")
    return AuditEvent.objects.create(
        actor=user,
        actor_label=_storable(label, 200),
        action=_storable(action, 60),
        target=_storable(str(target), 200),
        outcome=outcome,
        remote_addr=_storable(remote_addr, 64),
        via=via,
        detail=_storable(detail or {}),
    )


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str, actor: Any, via: str) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and only its hash is kept."""
    if not name or len(name) > 100:
        raise InvalidInput("name must be 1-100 characters", field="name")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, key_hash=_hash(secret))
    audit_record(actor=actor, action="token.create", outcome="ok", target=f"token {prefix} for {user}", via=via)
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


@transaction.atomic
def api_token_revoke(*, prefix: str, actor: Any, via: str) -> ApiToken:
    token = ApiToken.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if token is None:
        raise NotFound(f"no active token with prefix {prefix!r}", field="prefix")
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    audit_record(actor=actor, action="token.revoke", outcome="ok", target=f"token {prefix}", via=via)
    token.refresh_from_db()
    return token


def api_token_authenticate(raw: str) -> AbstractBaseUser | None:
    """The user of a presented token, or None. Constant-time comparison of the hash."""
    parts = raw.split("_", 2)
    # Checked before any query: a NUL in a header must be "unknown token", not a database error.
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not TOKEN_PREFIX_RE.fullmatch(parts[1]):
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.key_hash, _hash(parts[2])):
        return None
    if not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


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


# ----------------------------------------------------------------- projects and nodes
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
