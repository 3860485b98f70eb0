"""Websocket identities beyond the Django session cookie.

- A bearer credential offered as a subprotocol: browsers cannot set headers on a websocket, and a
  token in the URL would end up in logs, so a client offers the subprotocols
  ["fedml", "bearer.<token>"]; the server answers "fedml".
- The dashboard's Supabase session cookie (`sb-<ref>-auth-token`, see accounts.authentication),
  sent by a browser on the dashboard's origin. The handshake's Origin is checked before this by
  channels' AllowedHostsOriginValidator (fedml_site.asgi), and a websocket only reads.

A Django session wins over both; an offered bearer credential wins over the cookie.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.http.cookie import parse_cookie

from accounts.authentication import identify, identify_supabase, session_cookie_token, supabase_configured

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
