"""Identities: Django sessions (admin, browser), FedML API tokens and Supabase access tokens.

`Authorization: Bearer fedml_<prefix>_<secret>` is an API token; any other bearer credential is
taken as a Supabase JWT, verified locally (HS256 with SUPABASE_JWT_SECRET, or the project's
JWKS where SUPABASE_JWKS_URL is set), with its audience and expiry checked, and its `sub` mapped
to a FedML user through SupabaseIdentity. An unknown subject is refused, never auto-created.
"""

from __future__ import annotations

import functools
from typing import Any

import jwt
from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts import services
from accounts.models import SupabaseIdentity


@functools.lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


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


def identify(credential: str) -> Any | None:
    """The active user a bearer credential stands for, or None."""
    if credential.startswith(f"{services.TOKEN_PREFIX}_"):
        return services.api_token_authenticate(credential)
    try:
        claims = supabase_claims(credential)
    except (jwt.InvalidTokenError, jwt.PyJWKClientError, ValueError):
        return None
    subject = str(claims["sub"])
    if not subject or "\x00" in subject or len(subject) > 200:
        return None  # no such subject can be stored; asking PostgreSQL would be an error
    identity = SupabaseIdentity.objects.select_related("user").filter(subject=subject).first()
    if identity is None or not identity.user.is_active:
        return None
    return identity.user


class BearerAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthenticationFailed("Authorization must be 'Bearer <token>'")
        if len(credential) > 8192:
            raise AuthenticationFailed("token too long")
        user = identify(credential.strip())
        if user is None:
            raise AuthenticationFailed("invalid, expired or unknown token")
        return user, credential.strip()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="fedml"'
