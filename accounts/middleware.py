"""Websocket identities beyond the session cookie: a bearer credential offered as a subprotocol.

Browsers cannot set headers on a websocket, and a token in the URL would end up in logs, so a
client offers the subprotocols ["fedml", "bearer.<token>"]; the server answers "fedml".
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from accounts.authentication import identify

SUBPROTOCOL = "fedml"
BEARER_PREFIX = "bearer."


class BearerSubprotocolMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            offered = [p for p in scope.get("subprotocols", []) if p.startswith(BEARER_PREFIX)]
            user = scope.get("user")
            if offered and not getattr(user, "is_authenticated", False):
                found = await database_sync_to_async(identify)(offered[0][len(BEARER_PREFIX) :])
                if found is not None:
                    scope = dict(scope, user=found)
        return await super().__call__(scope, receive, send)
