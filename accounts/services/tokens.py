"""API tokens: created with their secret shown once; only the hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services.audit import audit_record
from core.errors import InvalidInput, NotFound

TOKEN_PREFIX = "fedml"
TOKEN_PREFIX_RE = re.compile(r"[0-9a-f]{12}")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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
