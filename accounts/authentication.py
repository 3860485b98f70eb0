"""Identities: Django sessions (admin, browser), FedML API tokens and Supabase access tokens.

`Authorization: Bearer fedml_<prefix>_<secret>` is an API token; any other bearer credential is
taken as a Supabase JWT, verified locally (HS256 with SUPABASE_JWT_SECRET, or the project's
JWKS where SUPABASE_JWKS_URL is set), with its audience and expiry checked, and its `sub` mapped
to a person (table `users`, id = `sub`). An unknown subject is provisioned (person and Django
user) unless SUPABASE_AUTO_PROVISION is off.

The dashboard's browser session is a cookie written by @supabase/ssr, `sb-<ref>-auth-token`
(split into `.0`, `.1`, ... when long): `base64-` + base64url(JSON session), or the JSON itself
(percent-encoded) as older versions wrote it. Its `access_token` is verified like a bearer one.
A cookie is sent by the browser on its own, so a request that changes something and is
authenticated by it must come from a dashboard origin (the `Origin` header): that is the CSRF
defence. A bearer header needs none.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlparse

import jwt
from django.conf import settings
from django.utils.http import is_same_domain
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from accounts import services
from accounts.services import people
from core.parsers import json_loads

MAX_TOKEN_CHARS = 8192
MAX_COOKIE_CHARS = 64 * 1024  # a session with a large user object spans a few 3180-character chunks
BASE64_PREFIX = "base64-"
SESSION_COOKIE_RE = re.compile(r"^sb-(?P<ref>.+)-auth-token(?:\.(?P<chunk>0|[1-9][0-9]{0,2}))?$")
_BASE64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


@functools.lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


def supabase_configured() -> bool:
    return bool(settings.SUPABASE_JWKS_URL or settings.SUPABASE_JWT_SECRET)


def supabase_claims(token: str) -> dict[str, Any]:
    """Verify a Supabase access token; raises jwt.InvalidTokenError (or ValueError if unconfigured)."""
    if settings.SUPABASE_JWKS_URL:
        key: Any = _jwks_client(settings.SUPABASE_JWKS_URL).get_signing_key_from_jwt(token).key
        algorithms = ["RS256", "ES256"]
    elif settings.SUPABASE_JWT_SECRET:
        key = settings.SUPABASE_JWT_SECRET
        algorithms = ["HS256"]
    else:
        raise ValueError("Supabase tokens are not accepted: set SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL")
    return jwt.decode(
        token,
        key,
        algorithms=algorithms,
        audience=settings.SUPABASE_JWT_AUDIENCE,
        options={"require": ["exp", "sub", "aud"]},
        leeway=10,
    )


def identify_supabase(token: str) -> Any | None:
    """The active user a Supabase access token stands for (provisioned if new and allowed), or None."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        claims = supabase_claims(token)
    except (jwt.InvalidTokenError, jwt.PyJWKClientError, ValueError):
        return None
    try:
        subject = uuid.UUID(str(claims["sub"]))
    except ValueError:
        return None  # Supabase user ids are UUIDs; anything else names nobody
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    metadata = claims.get("user_metadata") if isinstance(claims.get("user_metadata"), dict) else {}
    person = people.person_provision(subject=subject, email=email or None, metadata=metadata)
    return person.django_user if person is not None else None


def identify(credential: str) -> Any | None:
    """The active user a bearer credential stands for, or None."""
    if credential.startswith(f"{services.TOKEN_PREFIX}_"):
        return services.api_token_authenticate(credential)
    return identify_supabase(credential)


# --- the dashboard's session cookie -------------------------------------------------------------


def _combined(parts: dict[int | None, str]) -> str | None:
    """@supabase/ssr's combineChunks: the whole cookie if set, else chunks 0, 1, ... up to a gap."""
    if parts.get(None):
        return parts[None]
    chunks: list[str] = []
    while parts.get(len(chunks)):
        chunks.append(parts[len(chunks)])
    return "".join(chunks) or None


def _decoded(raw: str) -> str | None:
    if raw.startswith(BASE64_PREFIX):
        # The JS decoder skips whitespace and "="; nothing else outside the URL-safe alphabet.
        text = re.sub(r"[ \t\r\n=]", "", raw[len(BASE64_PREFIX) :])
        if not _BASE64URL_RE.fullmatch(text) or len(text) % 4 == 1:
            return None
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    # Older @supabase/ssr: the JSON itself, percent-encoded when the cookie was serialized.
    return raw if raw.lstrip().startswith(("{", "[")) else unquote(raw)


def session_access_token(value: str) -> str | None:
    """The access token in one combined `sb-<ref>-auth-token` value, or None if it holds none."""
    if len(value) > MAX_COOKIE_CHARS:
        return None
    text = _decoded(value)
    if text is None:
        return None
    try:
        session = json_loads(text)  # nested too deep is unreadable too, not a RecursionError
    except ValueError:
        return None
    if isinstance(session, list) and session:  # auth-helpers' [access_token, refresh_token, ...]
        token = session[0]
    elif isinstance(session, dict):
        token = session.get("access_token")
        if token is None and isinstance(session.get("currentSession"), dict):  # supabase-js v1
            token = session["currentSession"].get("access_token")
    else:
        return None
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return token


def _preferred_ref() -> str | None:
    host = urlparse(settings.SUPABASE_URL).hostname if settings.SUPABASE_URL else None
    return host.split(".")[0] if host else None


def session_cookie_token(cookies: Mapping[str, str]) -> str | None:
    """The access token of the dashboard's Supabase session among these cookies, or None.

    With SUPABASE_URL set only its project's cookie counts; otherwise the first readable one."""
    groups: dict[str, dict[int | None, str]] = {}
    for name, value in cookies.items():
        match = SESSION_COOKIE_RE.match(name)
        if match and isinstance(value, str):
            chunk = match.group("chunk")
            groups.setdefault(match.group("ref"), {})[None if chunk is None else int(chunk)] = value
    preferred = _preferred_ref()
    refs = [preferred] if preferred else sorted(groups)
    for ref in refs:
        combined = _combined(groups.get(ref, {}))
        token = session_access_token(combined) if combined else None
        if token is not None:
            return token
    return None


def trusted_origin(origin: str | None) -> bool:
    """Whether an Origin header names a dashboard (FEDML_DASHBOARD_ORIGINS) or a CSRF-trusted origin."""
    if not origin or origin == "null":
        return False
    origin = origin.rstrip("/").lower()
    for allowed in [*settings.DASHBOARD_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]:
        allowed = allowed.rstrip("/").lower()
        if "*" not in allowed:
            if origin == allowed:
                return True
            continue
        # Django's CSRF_TRUSTED_ORIGINS form "https://*.example.com": any subdomain, same scheme.
        scheme, _, pattern = allowed.partition("://*")
        got = urlparse(origin)
        if got.scheme == scheme and pattern and is_same_domain(got.netloc, pattern):
            return True
    return False


class BearerAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthenticationFailed("Authorization must be 'Bearer <token>'")
        if len(credential) > MAX_TOKEN_CHARS:
            raise AuthenticationFailed("token too long")
        user = identify(credential.strip())
        if user is None:
            raise AuthenticationFailed("invalid, expired or unknown token")
        return user, credential.strip()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="fedml"'


class SupabaseCookieAuthentication(BaseAuthentication):
    """The dashboard's Supabase session cookie, when FedML is reached on the dashboard's origin.

    No readable session in the cookies (or no Supabase verification configured): not this
    class's business (None). A session whose access token fails verification: 401. An unsafe
    method without a dashboard Origin: 403, checked before the token so that a cross-site
    request never provisions anyone.

    Cookies ignore ports, so FedML's own pages on the dashboard's host get the dashboard's cookie
    too: where a Django session cookie is present, the two refusals above give way to it instead
    (SessionAuthentication next, with its own CSRF check), and a stale dashboard session does not
    lock a signed-in admin out.
    """

    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        if not supabase_configured():
            return None
        token = session_cookie_token(request.COOKIES)
        if token is None:
            return None
        django_session = settings.SESSION_COOKIE_NAME in request.COOKIES
        if request.method not in SAFE_METHODS and not trusted_origin(request.headers.get("Origin")):
            if django_session:
                return None
            raise PermissionDenied(
                "Origin: a request that changes something with the Supabase session cookie must come from a "
                "dashboard origin (FEDML_DASHBOARD_ORIGINS or DJANGO_CSRF_TRUSTED_ORIGINS); "
                f"got {request.headers.get('Origin') or 'no Origin header'}"
            )
        user = identify_supabase(token)
        if user is None:
            if django_session:
                return None
            raise AuthenticationFailed("the Supabase session cookie holds an invalid, expired or unknown access token")
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="fedml"'


class SupabaseCookieScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.SupabaseCookieAuthentication"
    name = "supabaseSessionCookie"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sb-<ref>-auth-token",
            "description": "The dashboard's @supabase/ssr session cookie (chunks .0, .1, ... accepted); "
            "unsafe methods need an Origin in FEDML_DASHBOARD_ORIGINS or DJANGO_CSRF_TRUSTED_ORIGINS.",
        }
