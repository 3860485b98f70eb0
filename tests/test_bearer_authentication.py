"""API tokens and Supabase access tokens (HS256, verified locally), over HTTP and websockets."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, SupabaseIdentity
from accounts.services import api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db

SECRET = "super-secret-jwt-key-for-tests-0123456789"
HEALTH = "/api/coordinator/health"


@pytest.fixture
def staff() -> Any:
    return get_user_model().objects.create_user(username="ops", password="pw-123456-xyz", is_staff=True)


def _get(authorization: str | None) -> int:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(HEALTH).status_code


def test_api_token_authenticates_until_revoked_and_only_its_hash_is_stored(staff: Any) -> None:
    token, secret = api_token_create(user=staff, name="dashboard", actor="t", via="t")
    assert secret.split("_")[1] == token.prefix and secret not in str(ApiToken.objects.values_list().get())
    assert _get(f"Bearer {secret}") == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None
    api_token_revoke(prefix=token.prefix, actor="t", via="t")
    assert _get(f"Bearer {secret}") == 401
    assert AuditEvent.objects.filter(action__in=["token.create", "token.revoke"], outcome="ok").count() == 2


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer fedml_nope_nope",
        "Bearer ",
        "Basic b3BzOnB3",
        "Token abc",
        "Bearer fedml_only",
        "Bearer " + "x" * 9000,
        "Bearer fedml_ab\x00cdef012345_secret",  # PostgreSQL cannot even be asked about a NUL
        "Bearer fedml_ABCDEF012345_secret",
    ],
)
def test_malformed_or_unknown_credentials_are_refused_with_401(staff: Any, authorization: str) -> None:
    assert _get(authorization) == 401


def _jwt(**overrides: Any) -> str:
    claims = {"sub": "supa-user-1", "aud": "authenticated", "exp": int(time.time()) + 600, "role": "authenticated"}
    claims.update(overrides)
    secret = claims.pop("_secret", SECRET)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


@pytest.fixture
def supabase(settings: Any, staff: Any) -> Any:
    settings.SUPABASE_JWT_SECRET = SECRET
    SupabaseIdentity.objects.create(subject="supa-user-1", user=staff)
    return staff


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({}, 200),
        ({"exp": int(time.time()) - 3600}, 401),  # expired
        ({"_secret": "another-secret-of-sufficient-length-000"}, 401),  # wrongly signed
        ({"aud": "anon"}, 401),  # wrong audience
        ({"sub": "someone-else"}, 401),  # unknown subject: never auto-created
        ({"exp": None}, 401),  # no expiry
        ({"sub": "supa\x00user"}, 401),  # a subject no row can hold
        ({"sub": "s" * 201}, 401),
    ],
)
def test_supabase_access_tokens_are_verified_locally(supabase: Any, claims: dict, status: int) -> None:
    assert _get(f"Bearer {_jwt(**claims)}") == status


def test_supabase_tokens_are_refused_when_no_secret_is_configured(settings: Any, staff: Any) -> None:
    settings.SUPABASE_JWT_SECRET = ""
    SupabaseIdentity.objects.create(subject="supa-user-1", user=staff)
    assert _get(f"Bearer {_jwt()}") == 401


def test_api_token_command_creates_once_shown_tokens_and_revokes_them(
    staff: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("api_token", "create", "--user", "ops", "--name", "ci")
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert _get(f"Bearer {secret}") == 200
    call_command("api_token", "revoke", "--prefix", secret.split("_")[1])
    assert _get(f"Bearer {secret}") == 401
    assert AuditEvent.objects.filter(actor_label__startswith="cli:", action="token.create").exists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websocket_accepts_a_bearer_subprotocol_and_refuses_a_bad_one() -> None:
    from channels.db import database_sync_to_async as sync_to_async
    from channels.testing import WebsocketCommunicator

    from fedml_site.asgi import application
    from tests.factories import NodeSessionFactory

    user = await sync_to_async(get_user_model().objects.create_user)(
        username="ws", password="pw-123456-xyz", is_staff=True
    )
    _, secret = await sync_to_async(api_token_create)(user=user, name="ws", actor="t", via="t")
    session = await sync_to_async(NodeSessionFactory)(status="running")
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    good = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/logs/", headers=headers, subprotocols=["fedml", f"bearer.{secret}"]
    )
    connected, subprotocol = await good.connect(timeout=10)
    assert connected and subprotocol == "fedml"
    assert (await good.receive_json_from(timeout=10))["type"] == "hello"
    await good.disconnect()
    bad = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/logs/", headers=headers, subprotocols=["fedml", "bearer.fedml_x_y"]
    )
    await bad.connect(timeout=10)
    assert await bad.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
