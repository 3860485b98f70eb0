"""Websocket identities beyond the Django session cookie.

- A bearer credential offered as a subprotocol: browsers cannot set headers on a websocket, and a
  token in the URL would end up in logs, so a client offers the subprotocols
  ["fedml", "bearer.<token>"]; the server answers "fedml".
- The dashboard's Supabase session cookie (`sb-<ref>-auth-token`, see accounts.authentication),
  sent by a browser on the dashboard's origin. The handshake's Origin is checked before this by
  TrustedOriginValidator (fedml_site.asgi), and a websocket only reads.

A Django session wins over both; an offered bearer credential wins over the cookie.

A browser sends its cookies with a websocket handshake whatever page opens it, and cookies ignore
ports, so the handshake's Origin is checked as Django checks it for unsafe HTTP requests: scheme,
host and port equal to the request's own (its Host among ALLOWED_HOSTS), or a trusted origin
(FEDML_DASHBOARD_ORIGINS, DJANGO_CSRF_TRUSTED_ORIGINS). Channels' AllowedHostsOriginValidator
compared the host alone, so a page on any port of an allowed host could use a staff cookie.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host

from accounts.authentication import (
    identify,
    identify_supabase,
    session_cookie_token,
    supabase_configured,
    trusted_origin,
)

SUBPROTOCOL = "fedml"
BEARER_PREFIX = "bearer."


def _cookies(scope: dict[str, Any]) -> dict[str, str]:
    if isinstance(scope.get("cookies"), dict):  # channels' CookieMiddleware (AuthMiddlewareStack)
        return scope["cookies"]
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            return parse_cookie(value.decode("latin-1"))
    return {}


class BearerSubprotocolMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not getattr(scope.get("user"), "is_authenticated", False):
            found = None
            offered = [p for p in scope.get("subprotocols", []) if p.startswith(BEARER_PREFIX)]
            if offered:
                found = await database_sync_to_async(identify)(offered[0][len(BEARER_PREFIX) :])
            elif supabase_configured():
                token = session_cookie_token(_cookies(scope))
                if token is not None:
                    found = await database_sync_to_async(identify_supabase)(token)
            if found is not None:
                scope = dict(scope, user=found)
        return await super().__call__(scope, receive, send)


def _headers(scope: dict[str, Any], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", []) if key == name]


def _own_origin(scope: dict[str, Any]) -> str | None:
    """The origin the handshake was made to, as Django's request.get_host() and is_secure() see it:
    None when its Host is not one of ALLOWED_HOSTS."""
    hosts = _headers(scope, b"host")
    if len(hosts) != 1:
        return None
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    domain, _ = split_domain_port(hosts[0])
    if not domain or not validate_host(domain, allowed):
        return None
    secure = scope.get("scheme") == "wss"
    if settings.SECURE_PROXY_SSL_HEADER:  # DJANGO_BEHIND_TLS_PROXY: the proxy says how the client came
        header, value = settings.SECURE_PROXY_SSL_HEADER
        forwarded = _headers(scope, header.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1"))
        if forwarded:
            secure = forwarded[0].split(",", 1)[0].strip() == value
    return f"{'https' if secure else 'http'}://{hosts[0]}".lower()


def websocket_origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a handshake's Origin is its own origin (scheme, host and port) or a trusted one.
    No Origin is refused, as before: a script that connects names FedML's origin."""
    origins = _headers(scope, b"origin")
    if len(origins) != 1:
        return False
    origin = origins[0].rstrip("/").lower()
    return origin == _own_origin(scope) or trusted_origin(origin)


class TrustedOriginValidator:
    """Refuses (HTTP 403 on the handshake) a websocket whose Origin is not allowed."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket":
            raise ValueError("TrustedOriginValidator only guards websockets")
        if websocket_origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
