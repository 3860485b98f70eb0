"""API tokens and Supabase access tokens (HS256, verified locally), over HTTP and websockets;
provisioning of the people (table `users`) that Supabase tokens name."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.authentication import identify
from accounts.models import ApiToken, AuditEvent, Person
from accounts.services import api_token_create, api_token_revoke
from tests.factories import UserFactory, person_of

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


def supabase_jwt(sub: Any, secret: str = SECRET, **overrides: Any) -> str:
    """A Supabase Auth access token as its server signs it (HS256); None removes a claim."""
    claims = {"sub": str(sub), "aud": "authenticated", "exp": int(time.time()) + 600, "role": "authenticated"}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


@pytest.fixture
def supabase(settings: Any, staff: Any) -> Person:
    """Supabase tokens verified with SECRET; the staff user's person (its id is the tokens' `sub`)."""
    settings.SUPABASE_JWT_SECRET = SECRET
    settings.SUPABASE_JWKS_URL = ""
    return person_of(staff)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({}, 200),
        ({"exp": int(time.time()) - 3600}, 401),  # expired
        ({"_secret": "another-secret-of-sufficient-length-000"}, 401),  # wrongly signed
        ({"aud": "anon"}, 401),  # wrong audience
        ({"exp": None}, 401),  # no expiry
        ({"sub": "supa\x00user"}, 401),  # a subject no row can hold
        ({"sub": "supa-user-1"}, 401),  # Supabase user ids are UUIDs
        ({"sub": "s" * 201}, 401),
    ],
)
def test_supabase_access_tokens_are_verified_locally(supabase: Person, claims: dict, status: int) -> None:
    secret = claims.pop("_secret", SECRET)
    sub = claims.pop("sub", supabase.pk)
    assert _get(f"Bearer {supabase_jwt(sub, secret, **claims)}") == status
    assert Person.objects.count() == 1  # nothing provisioned by a refused token


def test_supabase_tokens_are_refused_when_no_secret_is_configured(supabase: Person, settings: Any) -> None:
    settings.SUPABASE_JWT_SECRET = ""
    assert _get(f"Bearer {supabase_jwt(supabase.pk)}") == 401


def test_an_unknown_subject_is_provisioned_with_its_email_and_metadata(supabase: Person) -> None:
    sub = uuid.uuid4()
    metadata = {"full_name": "Ada Lovelace", "avatar_url": "https://example.org/ada.png"}
    token = supabase_jwt(sub, email="ada@example.org", user_metadata=metadata)
    assert _get(f"Bearer {token}") == 200
    person = Person.objects.select_related("django_user").get(pk=sub)
    assert (person.email, person.display_name, person.metadata, person.role) == (
        "ada@example.org",
        "Ada Lovelace",
        metadata,
        "client",
    )
    user = person.django_user
    assert user.username == f"supabase-{sub}" and user.is_active and not user.has_usable_password()
    assert not user.is_staff
    # The same subject again: the same person and Django user, nothing new.
    assert _get(f"Bearer {token}") == 200
    assert (
        Person.objects.count() == 2 and get_user_model().objects.filter(username__startswith="supabase-").count() == 1
    )
    assert identify(token) == user


def test_without_auto_provisioning_an_unknown_subject_gets_401_and_no_row(supabase: Person, settings: Any) -> None:
    settings.SUPABASE_AUTO_PROVISION = False
    sub = uuid.uuid4()
    assert _get(f"Bearer {supabase_jwt(sub, email='x@example.org')}") == 401
    assert not Person.objects.filter(pk=sub).exists()
    assert _get(f"Bearer {supabase_jwt(supabase.pk)}") == 200  # known people still sign in


def test_a_person_whose_django_user_is_inactive_is_refused(supabase: Person, staff: Any) -> None:
    token = supabase_jwt(supabase.pk)
    assert _get(f"Bearer {token}") == 200
    staff.is_active = False
    staff.save()
    assert _get(f"Bearer {token}") == 401
    assert identify(token) is None


def test_fedml_users_get_a_person_row_and_their_id_signs_them_in(supabase: Person) -> None:
    user = UserFactory(is_staff=False)
    admin = UserFactory(is_staff=True)
    person, admin_person = person_of(user), person_of(admin)
    assert (person.email, person.role, admin_person.role) == (user.email, "client", "admin")
    assert identify(supabase_jwt(person.pk)) == user
    assert _get(f"Bearer {supabase_jwt(admin_person.pk)}") == 200


def test_a_person_without_a_django_user_gets_one_when_it_signs_in(supabase: Person) -> None:
    orphan = Person.objects.create(email="orphan@example.org")
    assert _get(f"Bearer {supabase_jwt(orphan.pk)}") == 200
    orphan.refresh_from_db()
    assert orphan.django_user is not None and orphan.django_user.username == f"supabase-{orphan.pk}"


def test_claims_no_database_can_store_are_not_kept(supabase: Person) -> None:
    sub = uuid.uuid4()
    token = supabase_jwt(sub, email="bad\x00@example.org", user_metadata={"full_name": "nul\x00name"})
    assert _get(f"Bearer {token}") == 200
    person = Person.objects.get(pk=sub)
    assert (person.email, person.metadata, person.display_name) == (None, {}, None)


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
async def test_websocket_accepts_a_bearer_subprotocol_and_refuses_a_bad_one(settings: Any) -> None:
    from channels.db import database_sync_to_async as sync_to_async
    from channels.testing import WebsocketCommunicator

    from fedml_site.asgi import application
    from tests.factories import NodeSessionFactory

    settings.SUPABASE_JWT_SECRET = SECRET
    user = await sync_to_async(get_user_model().objects.create_user)(
        username="ws", password="pw-123456-xyz", is_staff=True
    )
    _, secret = await sync_to_async(api_token_create)(user=user, name="ws", actor="t", via="t")
    person = await sync_to_async(person_of)(user)
    session = await sync_to_async(NodeSessionFactory)(status="running")
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    for credential in (secret, supabase_jwt(person.pk)):
        good = WebsocketCommunicator(
            application,
            f"/ws/sessions/{session.pk}/logs/",
            headers=headers,
            subprotocols=["fedml", f"bearer.{credential}"],
        )
        connected, subprotocol = await good.connect(timeout=10)
        assert connected and subprotocol == "fedml"
        assert (await good.receive_json_from(timeout=10))["type"] == "hello"
        await good.disconnect()
    for credential in ("fedml_x_y", supabase_jwt(person.pk, exp=int(time.time()) - 3600)):
        bad = WebsocketCommunicator(
            application,
            f"/ws/sessions/{session.pk}/logs/",
            headers=headers,
            subprotocols=["fedml", f"bearer.{credential}"],
        )
        await bad.connect(timeout=10)
        assert await bad.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
