"""The websocket handshake's Origin (fedml_site.asgi, accounts.middleware.TrustedOriginValidator):
as Django's CSRF check, scheme, host and port must equal the handshake's own (its Host among
ALLOWED_HOSTS) or name a trusted origin (FEDML_DASHBOARD_ORIGINS, DJANGO_CSRF_TRUSTED_ORIGINS).
A browser sends a staff member's cookies to FedML whatever page opens the socket, and cookies
ignore ports. The real ASGI application, consumer and channel layer; no mocks."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call
from channels.testing import WebsocketCommunicator

from accounts.services import api_token_create
from fedml_site.asgi import application
from tests.factories import NodeSessionFactory
from tests.ws import make_user, receive, session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

DASHBOARD = "http://dashboard.example:3000"  # a host that is not among ALLOWED_HOSTS


@pytest.fixture
def origins(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "fedml.example.org"]
    settings.DASHBOARD_ORIGINS = [DASHBOARD]
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.net"]


async def _handshake(
    headers: list[tuple[bytes, bytes]], *, scheme: str = "ws", subprotocols: list[str] | None = None
) -> tuple[bool, Any]:
    """Whether a handshake with these headers opens a staff-visible session's log (and says hello)."""
    session = await sync_to_async(NodeSessionFactory)(status="running")
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/logs/", headers=headers, subprotocols=subprotocols
    )
    communicator.scope["scheme"] = scheme
    connected, detail = await communicator.connect(timeout=10)
    if connected:
        assert (await receive(communicator))["type"] == "hello"
        await communicator.disconnect()
    return connected, detail


async def test_a_page_on_another_port_scheme_or_host_cannot_use_a_staff_cookie(origins: None, settings: Any) -> None:
    cookie = (b"cookie", f"sessionid={await session_cookie(await make_user(staff=True))}".encode())
    refused = [
        # (Origin, Host, handshake scheme)
        (b"http://localhost:8001", b"localhost:8000", "ws"),  # same host, another port
        (b"http://localhost", b"localhost:8000", "ws"),
        (b"http://localhost:3000", b"localhost", "ws"),  # a dashboard port nobody listed
        (b"https://localhost:8000", b"localhost:8000", "ws"),  # another scheme
        (b"http://localhost:8000", b"localhost:8000", "wss"),
        (b"http://dashboard.example:3001", b"localhost", "ws"),  # the dashboard's host, another port
        (b"http://dash.example.net", b"localhost", "ws"),  # a trusted wildcard, another scheme
        (b"http://evil.example", b"localhost", "ws"),
        (b"null", b"localhost", "ws"),
        (b"http://evil.example:8000", b"evil.example:8000", "ws"),  # its own origin, but not an allowed host
    ]
    for origin, host, scheme in refused:
        connected, _ = await _handshake([(b"origin", origin), (b"host", host), cookie], scheme=scheme)
        assert not connected, (origin, host, scheme)
    assert not (await _handshake([(b"host", b"localhost"), cookie]))[0]  # no Origin: refused, as before
    two = [(b"origin", b"http://evil.example"), (b"origin", b"http://localhost"), (b"host", b"localhost"), cookie]
    assert not (await _handshake(two))[0]

    # Behind a TLS proxy (DJANGO_BEHIND_TLS_PROXY) the scheme is the proxy's X-Forwarded-Proto.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"host", b"fedml.example.org"), (b"x-forwarded-proto", b"https"), cookie]
    assert not (await _handshake([(b"origin", b"http://fedml.example.org"), *proxied]))[0]
    assert (await _handshake([(b"origin", b"https://fedml.example.org"), *proxied]))[0]


async def test_the_own_origin_and_trusted_origins_are_accepted(origins: None) -> None:
    cookie = (b"cookie", f"sessionid={await session_cookie(await make_user(staff=True))}".encode())
    accepted = [
        (b"http://localhost:8000", b"localhost:8000", "ws"),  # the admin's own pages
        (b"http://localhost", b"localhost", "ws"),
        (b"https://fedml.example.org", b"fedml.example.org", "wss"),
        (DASHBOARD.encode(), b"localhost:8000", "ws"),  # FEDML_DASHBOARD_ORIGINS, on a host not allowed
        (b"https://dash.example.net", b"localhost:8000", "ws"),  # DJANGO_CSRF_TRUSTED_ORIGINS' wildcard
    ]
    for origin, host, scheme in accepted:
        connected, _ = await _handshake([(b"origin", origin), (b"host", host), cookie], scheme=scheme)
        assert connected, (origin, host, scheme)


async def test_a_bearer_client_naming_fedmls_origin_still_connects(origins: None) -> None:
    """Scripts offer an API token as a subprotocol; a handshake without Origin was refused before
    and still is, so they send FedML's own origin, which keeps working."""
    user = await make_user(staff=True)
    _, token = await sync_to_async(api_token_create)(user=user, name="script", actor="t", via="t")
    offered = ["fedml", f"bearer.{token}"]

    own = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
    assert await _handshake(own, subprotocols=offered) == (True, "fedml")
    other_port = [(b"origin", b"http://127.0.0.1:8001"), (b"host", b"127.0.0.1:8000")]
    assert not (await _handshake(other_port, subprotocols=offered))[0]
