"""The dashboard's Supabase session cookie (@supabase/ssr's `sb-<ref>-auth-token`), over HTTP and
websockets: whole or chunked, base64url or plain JSON, verified like a bearer token, and refused
for unsafe methods unless the request comes from a dashboard origin."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.authentication import session_cookie_token
from accounts.models import Person
from tests.factories import person_of
from tests.test_bearer_authentication import SECRET, supabase_jwt

pytestmark = pytest.mark.django_db

HEALTH = "/api/coordinator/health"
NAME = "sb-localhost-auth-token"  # NEXT_PUBLIC_SUPABASE_URL=http://localhost:3000
DASHBOARD = "http://localhost:3000"
CHUNK = 3180  # @supabase/ssr's MAX_CHUNK_SIZE


def session_json(access_token: str, **extra: Any) -> str:
    """The session auth-js stores: the token response, as GoTrue answers it."""
    session = {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": 3600,
        "expires_at": int(time.time()) + 3600,
        "refresh_token": "r" * 40,
        "user": {"id": str(uuid.uuid4()), "aud": "authenticated", "app_metadata": {}, "user_metadata": {}},
    }
    session.update(extra)
    return json.dumps(session, separators=(",", ":"))


def cookie_value(session: str) -> str:
    """@supabase/ssr 0.7's encoding: "base64-" + unpadded base64url of the UTF-8 JSON."""
    return "base64-" + base64.urlsafe_b64encode(session.encode()).decode().rstrip("=")


def cookie_header(session: str, *, name: str = NAME, chunked: bool | None = None) -> str:
    """The Cookie header a browser sends: one cookie, or chunks .0, .1, ... when the value is long."""
    value = cookie_value(session)
    if chunked is False or (chunked is None and len(value) <= CHUNK):
        return f"{name}={value}"
    chunks = [value[i : i + CHUNK] for i in range(0, len(value), CHUNK)]
    return "; ".join(f"{name}.{i}={chunk}" for i, chunk in reversed(list(enumerate(chunks))))


@pytest.fixture
def staff_person(settings: Any) -> Person:
    settings.SUPABASE_JWT_SECRET = SECRET
    settings.SUPABASE_JWKS_URL = ""
    settings.SUPABASE_URL = ""
    settings.DASHBOARD_ORIGINS = [DASHBOARD]
    settings.CSRF_TRUSTED_ORIGINS = ["https://fedml.example.org", "https://*.example.net"]
    user = get_user_model().objects.create_user(username="ops", password="pw-123456-xyz", is_staff=True)
    return person_of(user)


def _request(method: str, cookie: str | None, *, origin: str | None = None, path: str = HEALTH) -> Any:
    extra: dict[str, str] = {}
    if cookie is not None:
        extra["HTTP_COOKIE"] = cookie
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    return getattr(APIClient(), method)(path, **extra)


def test_a_whole_cookie_signs_in(staff_person: Person) -> None:
    response = _request("get", cookie_header(session_json(supabase_jwt(staff_person.pk))))
    assert response.status_code == 200, response.content


def test_a_chunked_cookie_is_joined_in_order(staff_person: Person) -> None:
    big = {"user_metadata": {"bio": "x" * 9000}}  # the user object makes the session ~12 kB: 4 chunks
    header = cookie_header(session_json(supabase_jwt(staff_person.pk), user=big))
    assert header.count(f"{NAME}.") == 4
    assert _request("get", header).status_code == 200
    # A missing middle chunk leaves a value that decodes to nothing: no session, so 401.
    without_1 = "; ".join(part for part in header.split("; ") if not part.startswith(f"{NAME}.1="))
    assert _request("get", without_1).status_code == 401


@pytest.mark.parametrize("encoding", ["percent-encoded", "raw", "auth-helpers-array"])
def test_older_plain_json_cookies_sign_in(staff_person: Person, encoding: str) -> None:
    token = supabase_jwt(staff_person.pk)
    session = json.dumps([token, "refresh"]) if encoding == "auth-helpers-array" else session_json(token)
    value = session if encoding == "raw" else quote(session, safe="")
    assert session_cookie_token({NAME: value}) == token
    if encoding == "percent-encoded":  # what cookie.serialize wrote, as a browser sends it back
        assert _request("get", f"{NAME}={value}").status_code == 200


def test_a_cookie_whose_token_fails_verification_is_a_401_in_the_api_format(staff_person: Person) -> None:
    for token in (
        supabase_jwt(staff_person.pk, exp=int(time.time()) - 3600),
        supabase_jwt(staff_person.pk, secret="another-secret-of-sufficient-length-000"),
        "not-a-jwt",
        "a\x00b",  # readable, but nothing a database could be asked about
    ):
        response = _request("get", cookie_header(session_json(token)))
        assert response.status_code == 401
        assert "session cookie" in response.json()["detail"]
        assert response["WWW-Authenticate"] == 'Bearer realm="fedml"'


@pytest.mark.parametrize(
    "value",
    [
        "base64-",
        "base64-!!!!",
        "base64-" + base64.urlsafe_b64encode(b"\xff\xfe{").decode(),  # not UTF-8
        "base64-" + base64.urlsafe_b64encode(b"[]").decode(),
        "base64-" + base64.urlsafe_b64encode(b'{"access_token": 5}').decode(),
        "%7B%22access_token",
        "%ZZ",
        "{not json",
        "x" * 70_000,
        "null",
        # Nested deeper than FEDML_MAX_JSON_DEPTH: Python's parser would raise RecursionError.
        "base64-" + base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode(),
        "[" * 3000,
    ],
)
def test_an_unreadable_cookie_is_no_session_never_a_500(staff_person: Person, value: str) -> None:
    response = _request("get", f"{NAME}={value}")
    assert response.status_code == 401, response.content
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_cookies_are_ignored_when_supabase_tokens_are_not_accepted(staff_person: Person, settings: Any) -> None:
    settings.SUPABASE_JWT_SECRET = ""
    response = _request("get", cookie_header(session_json(supabase_jwt(staff_person.pk))))
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_only_the_configured_projects_cookie_counts(staff_person: Person, settings: Any) -> None:
    header = cookie_header(session_json(supabase_jwt(staff_person.pk)), name="sb-other-auth-token")
    assert _request("get", header).status_code == 200  # no SUPABASE_URL: any project's cookie
    settings.SUPABASE_URL = "https://fedml.example.org"
    assert _request("get", header).status_code == 401
    mine = cookie_header(session_json(supabase_jwt(staff_person.pk)), name="sb-fedml-auth-token")
    assert _request("get", f"{header}; {mine}").status_code == 200


def test_the_pkce_code_verifier_cookie_is_not_a_session(staff_person: Person) -> None:
    token = supabase_jwt(staff_person.pk)
    assert session_cookie_token({f"{NAME}-code-verifier": cookie_value(session_json(token))}) is None


def test_a_bearer_header_wins_over_the_cookie(staff_person: Person) -> None:
    good = cookie_header(session_json(supabase_jwt(staff_person.pk)))
    bad = cookie_header(session_json("not-a-jwt"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {supabase_jwt(staff_person.pk)}")
    assert client.get(HEALTH, HTTP_COOKIE=bad).status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert client.get(HEALTH, HTTP_COOKIE=good).status_code == 401


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, False),
        ("null", False),
        ("http://evil.example", False),
        ("http://localhost:3001", False),  # another port is another origin
        ("https://localhost:3000", False),
        (DASHBOARD, True),  # FEDML_DASHBOARD_ORIGINS
        ("https://fedml.example.org", True),  # DJANGO_CSRF_TRUSTED_ORIGINS
        ("https://dash.example.net", True),  # ... its subdomain wildcard
        ("http://dash.example.net", False),
        ("https://example.net.evil.example", False),
    ],
)
def test_unsafe_methods_with_the_cookie_need_a_dashboard_origin(
    staff_person: Person, origin: str | None, allowed: bool
) -> None:
    header = cookie_header(session_json(supabase_jwt(staff_person.pk)))
    for method in ("post", "put", "patch", "delete"):
        response = _request(method, header, origin=origin)
        if allowed:  # authenticated, then the view has no such method
            assert response.status_code == 405, response.content
        else:
            assert response.status_code == 403, response.content
            assert response.json()["detail"].startswith("Origin: ")
    assert _request("get", header, origin=origin).status_code == 200  # reads need no Origin


def test_a_cross_site_request_provisions_nobody(staff_person: Person) -> None:
    sub = uuid.uuid4()
    header = cookie_header(session_json(supabase_jwt(sub, email="new@example.org")))
    assert _request("post", header, origin="http://evil.example").status_code == 403
    assert not Person.objects.filter(pk=sub).exists()
    assert _request("get", header).status_code == 200
    assert Person.objects.get(pk=sub).email == "new@example.org"


def test_a_django_session_on_the_same_host_is_not_locked_out_by_a_dashboard_cookie(staff_person: Person) -> None:
    """Cookies ignore ports: FedML's own pages on the dashboard's host carry its cookie too."""
    other = get_user_model().objects.create_user(username="admin2", password="pw-123456-xyz", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(other)
    session = f"sessionid={client.cookies['sessionid'].value}"
    stale = cookie_header(session_json(supabase_jwt(staff_person.pk, exp=int(time.time()) - 3600)))
    assert client.get(HEALTH, HTTP_COOKIE=f"{session}; {stale}").status_code == 200
    # An unsafe request without a dashboard Origin goes to the session, whose CSRF check refuses it.
    fresh = cookie_header(session_json(supabase_jwt(staff_person.pk)))
    refused = client.post(HEALTH, HTTP_COOKIE=f"{session}; {fresh}", HTTP_ORIGIN="http://evil.example")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    # Without a session cookie, the stale dashboard session is a 401 naming the cookie.
    alone = APIClient().get(HEALTH, HTTP_COOKIE=stale)
    assert alone.status_code == 401 and "session cookie" in alone.json()["detail"]


def test_the_bearer_path_needs_no_origin(staff_person: Person) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {supabase_jwt(staff_person.pk)}")
    assert client.post(HEALTH).status_code == 405


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websockets_accept_the_cookie_and_refuse_a_bad_one(settings: Any) -> None:
    from channels.db import database_sync_to_async as sync_to_async
    from channels.testing import WebsocketCommunicator

    from fedml_site.asgi import application
    from tests.factories import NodeSessionFactory

    settings.SUPABASE_JWT_SECRET = SECRET
    settings.SUPABASE_URL = ""
    settings.DASHBOARD_ORIGINS = [DASHBOARD]  # the page's origin: another port than FedML's
    user = await sync_to_async(get_user_model().objects.create_user)(
        username="ws", password="pw-1234-xyz", is_staff=True
    )
    person = await sync_to_async(person_of)(user)
    path = f"/ws/sessions/{(await sync_to_async(NodeSessionFactory)(status='running')).pk}/logs/"

    async def connect(token: str, origin: bytes = b"http://localhost:3000") -> tuple[WebsocketCommunicator, Any]:
        cookie = cookie_header(session_json(token), chunked=True).encode()
        headers = [(b"origin", origin), (b"host", b"localhost"), (b"cookie", b"theme=dark; " + cookie)]
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        return communicator, connected

    good, connected = await connect(supabase_jwt(person.pk))
    assert connected
    assert (await good.receive_json_from(timeout=10))["type"] == "hello"
    await good.disconnect()
    expired, _ = await connect(supabase_jwt(person.pk, exp=int(time.time()) - 3600))
    assert await expired.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    foreign, connected = await connect(supabase_jwt(person.pk), origin=b"http://evil.example")
    assert not connected  # TrustedOriginValidator, before any cookie is read
