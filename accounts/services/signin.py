"""Embedded sign-in (accounts.gotrue): sessions of FedML's own users, as Supabase Auth issues them.

An access token is an HS256 JWT signed with SUPABASE_JWT_SECRET, with Supabase Auth's claims, so
`accounts.authentication.supabase_claims` verifies it like any Supabase token. A refresh token is
random; only its SHA-256 is stored. Each refresh revokes the token used and issues its child; a
revoked token presented again (stolen, or replayed) revokes every refresh token of its person,
unless it was rotated moments ago (REUSE_INTERVAL_SECONDS).

A refresh token starts with its session's id (32 hex digits), which the access tokens of that
session carry as `session_id`: the id survives rotation without being stored. The table keeps no
session column, so "this session" cannot be told from "this person" when revoking: logout and
reuse end every session of the person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Person, RefreshToken
from accounts.services.audit import audit_record
from accounts.services.people import person_ensure_for_user

SESSION_HEX = 32
SECRET_CHARS = 43  # secrets.token_urlsafe(32)
MAX_LOGIN_CHARS = 320
MAX_PASSWORD_CHARS = 1024
FAILURES_ALLOWED = 10  # failed password grants per email and per client address ...
FAILURE_WINDOW_SECONDS = 300  # ... within this window
# A refresh token presented again this soon after its rotation gets a sibling of the child it was
# rotated into, instead of ending the session (GoTrue's refresh-token reuse interval). Behind the
# dashboard's rewrite, its Next.js middleware may refresh on a proxied /api call whose Set-Cookie
# never reaches the browser, and concurrent requests refresh at once: the browser then presents the
# old token, within about 30 s (its refresh tick). See docs/dashboard.md, "Behind the rewrite".
REUSE_INTERVAL_SECONDS = 60
APP_METADATA = {"provider": "email", "providers": ["email"]}
VIA = "embedded-auth"


class SigninError(Exception):
    """A refusal as Supabase Auth words it: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


INVALID_CREDENTIALS = (400, "invalid_credentials", "Invalid login credentials")


@dataclass(frozen=True)
class IssuedSession:
    person: Person
    access_token: str
    refresh_token: str
    expires_in: int
    expires_at: int


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: Any, limit: int) -> str | None:
    """A string a query may carry (no NUL, no lone surrogate, bounded), or None."""
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > limit:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def user_metadata(person: Person) -> dict[str, Any]:
    metadata = dict(person.metadata) if isinstance(person.metadata, dict) else {}
    if person.display_name and person.display_name != person.email:
        metadata.setdefault("full_name", person.display_name)
    return metadata


def access_token_issue(*, person: Person, session_id: uuid.UUID, issuer: str) -> tuple[str, int]:
    """A Supabase-style access token for a person's session; returns (token, expires_at)."""
    now = int(time.time())
    expires_at = now + settings.EMBEDDED_AUTH_TOKEN_SECONDS
    claims = {
        "iss": issuer,
        "sub": str(person.pk),
        "aud": settings.SUPABASE_JWT_AUDIENCE,
        "exp": expires_at,
        "iat": now,
        "email": person.email or "",
        "phone": "",
        "app_metadata": APP_METADATA,
        "user_metadata": user_metadata(person),
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(session_id),
        "is_anonymous": False,
    }
    return jwt.encode(claims, settings.SUPABASE_JWT_SECRET, algorithm="HS256"), expires_at


def _issue(*, person: Person, session_id: uuid.UUID, issuer: str) -> IssuedSession:
    refresh = session_id.hex + secrets.token_urlsafe(32)
    RefreshToken.objects.create(person=person, token_hash=_hash(refresh))
    access, expires_at = access_token_issue(person=person, session_id=session_id, issuer=issuer)
    return IssuedSession(person, access, refresh, settings.EMBEDDED_AUTH_TOKEN_SECONDS, expires_at)


# --- the password grant ---------------------------------------------------------------------------


def _failure_keys(login: str, address: str) -> list[str]:
    return [
        f"fedml:signin-failures:login:{_hash(login.strip().lower())}",
        f"fedml:signin-failures:addr:{_hash(address)}",
    ]


def signin_throttled(*, login: str, address: str) -> bool:
    """Whether this email (or username) or this client address failed too often lately."""
    return any((cache.get(key) or 0) >= FAILURES_ALLOWED for key in _failure_keys(login, address))


def _failed(login: str, address: str) -> None:
    for key in _failure_keys(login, address):
        cache.add(key, 0, timeout=FAILURE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=FAILURE_WINDOW_SECONDS)


def _user_for(login: str, password: str) -> AbstractBaseUser | None:
    """The user whose email (case-insensitively) or username is `login` and whose password matches."""
    user_model = get_user_model()
    candidates = list(user_model.objects.filter(Q(username=login) | Q(email__iexact=login)).order_by("pk")[:5])
    candidates.sort(key=lambda u: u.get_username() != login)  # the exact username first
    checked = False
    for user in candidates:
        if user.has_usable_password():
            checked = True
            if user.check_password(password):
                return user
    if not checked:
        user_model().set_password(password)  # as long as a real check: no timing tells who exists
    return None


def password_signin(*, login: Any, password: Any, address: str, issuer: str) -> IssuedSession:
    """Sign a FedML user in with email (or username) and password; raises SigninError."""
    login_text, password_text = _text(login, MAX_LOGIN_CHARS), _text(password, MAX_PASSWORD_CHARS)
    throttle_login = login_text or "-"
    if signin_throttled(login=throttle_login, address=address):
        raise SigninError(429, "over_request_rate_limit", "Request rate limit reached")
    user = _user_for(login_text, password_text) if login_text and password_text else None
    if user is None:
        _failed(throttle_login, address)
        audit_record(
            actor="anonymous",
            action="signin.password",
            outcome="denied",
            target=f"login {login_text or '?'}",
            remote_addr=address,
            via=VIA,
        )
        raise SigninError(*INVALID_CREDENTIALS)
    if not user.is_active:
        raise SigninError(400, "user_banned", "User is banned")
    person = person_ensure_for_user(user=user)
    if person is None:
        raise SigninError(500, "unexpected_failure", "this user has no person row (not an auth user of this database)")
    cache.delete(_failure_keys(throttle_login, address)[0])
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(last_login=timezone.now())
        issued = _issue(person=person, session_id=uuid.uuid4(), issuer=issuer)
        audit_record(
            actor=user, action="signin.password", outcome="ok", target=str(person.pk), remote_addr=address, via=VIA
        )
    return issued


# --- the refresh-token grant ------------------------------------------------------------------------


def _session_of(token: str) -> uuid.UUID | None:
    if len(token) != SESSION_HEX + SECRET_CHARS:
        return None
    try:
        return uuid.UUID(hex=token[:SESSION_HEX])
    except ValueError:
        return None


def refresh_signin(*, refresh_token: Any, address: str, issuer: str) -> IssuedSession:
    """Rotate a refresh token: revoke it, issue its child. Raises SigninError."""
    token = _text(refresh_token, 512)
    if token is None:
        raise SigninError(400, "validation_failed", "refresh_token required")
    session_id = _session_of(token)
    found = RefreshToken.objects.select_related("person__django_user").filter(token_hash=_hash(token)).first()
    if session_id is None or found is None:
        raise SigninError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
    user = found.person.django_user
    if user is None or not user.is_active:
        raise SigninError(400, "user_banned", "User is banned")
    with transaction.atomic():
        now = timezone.now()
        if RefreshToken.objects.filter(pk=found.pk, revoked_at__isnull=True).update(revoked_at=now):
            return _issue(person=found.person, session_id=session_id, issuer=issuer)
        # Revoked before. Just rotated, while the person still has a live session: a client that did
        # not get the child (see REUSE_INTERVAL_SECONDS) gets a sibling. Otherwise a replay (stolen?)
        # or a signed-out session: every session of the person ends.
        revoked_at = RefreshToken.objects.filter(pk=found.pk).values_list("revoked_at", flat=True).first()
        recent = revoked_at is not None and now - revoked_at <= dt.timedelta(seconds=REUSE_INTERVAL_SECONDS)
        if recent and person_has_session(found.person):
            return _issue(person=found.person, session_id=session_id, issuer=issuer)
        ended = sessions_revoke(person=found.person)
        audit_record(
            actor=user,
            action="signin.refresh-reuse",
            outcome="denied",
            target=str(found.person_id),
            remote_addr=address,
            via=VIA,
            detail={"revoked": ended},
        )
    raise SigninError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")


def sessions_revoke(*, person: Person) -> int:
    """Revoke every refresh token of a person (sign out everywhere); returns how many were live."""
    return RefreshToken.objects.filter(person=person, revoked_at__isnull=True).update(revoked_at=timezone.now())


def signout(*, person: Person, address: str) -> int:
    with transaction.atomic():
        ended = sessions_revoke(person=person)
        audit_record(
            actor=person.django_user or "anonymous",
            action="signin.logout",
            outcome="ok",
            target=str(person.pk),
            remote_addr=address,
            via=VIA,
            detail={"revoked": ended},
        )
    return ended


def person_has_session(person: Person) -> bool:
    return RefreshToken.objects.filter(person=person, revoked_at__isnull=True).exists()
