"""Embedded Supabase Auth (/auth/v1/...): what @supabase/auth-js 2.x calls to sign in with a password,
refresh, read the user and sign out, answered as GoTrue answers; the tokens it issues sign in to
FedML's API as a bearer header and as the dashboard's session cookie."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.authentication import supabase_claims
from accounts.models import AuditEvent, Person, RefreshToken
from accounts.services import signin
from tests.factories import UserFactory, person_of
from tests.outage_kit import unreachable_database
from tests.test_supabase_cookie_auth import cookie_header, session_json

pytestmark = pytest.mark.django_db

SECRET = "embedded-auth-secret-of-at-least-32-characters"
PASSWORD = "correct horse battery staple"
VERSION = {"HTTP_X_SUPABASE_API_VERSION": "2024-01-01"}  # auth-js sends it on every request
SESSION_KEYS = {"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"}
USER_KEYS = {
    "id",
    "aud",
    "role",
    "email",
    "email_confirmed_at",
    "phone",
    "confirmed_at",
    "last_sign_in_at",
    "app_metadata",
    "user_metadata",
    "identities",
    "created_at",
    "updated_at",
    "is_anonymous",
}


@pytest.fixture(autouse=True)
def embedded(settings: Any) -> None:
    settings.EMBEDDED_AUTH = True
    settings.SUPABASE_JWT_SECRET = SECRET
    settings.SUPABASE_JWKS_URL = ""
    settings.SUPABASE_URL = ""
    settings.EMBEDDED_AUTH_TOKEN_SECONDS = 900
    cache.clear()


@pytest.fixture
def ada() -> Any:
    user = UserFactory(username="ada", email="Ada@Example.org", first_name="Ada", last_name="Lovelace")
    user.set_password(PASSWORD)
    user.save()
    return user


def post(path: str, body: Any = None, *, version: bool = True, **extra: Any) -> Any:
    """A POST as auth-js sends it: JSON, with the API version header (a CSRF-enforcing client)."""
    client = Client(enforce_csrf_checks=True)
    data = "" if body is None else body
    return client.post(
        f"/auth/v1/{path}", data, content_type="application/json;charset=UTF-8", **(VERSION if version else {}), **extra
    )


def password_grant(login: str, password: str = PASSWORD, **extra: Any) -> Any:
    body = {"email": login, "password": password, "gotrue_meta_security": {}}
    return post("token?grant_type=password", body, **extra)


def refresh_grant(token: str) -> Any:
    return post("token?grant_type=refresh_token", {"refresh_token": token})


def get_user(token: str | None, **extra: Any) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client().get("/auth/v1/user", **headers, **VERSION, **extra)


def assert_error(response: Any, status: int, code: str, message: str | None = None) -> None:
    """GoTrue's error for API version 2024-01-01: {code, message}, the version header echoed."""
    assert response.status_code == status, response.content
    assert response["X-Supabase-Api-Version"] == "2024-01-01"
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code
    if message is not None:
        assert body["message"] == message


def test_everything_is_404_when_embedded_auth_is_off(settings: Any, ada: Any) -> None:
    settings.EMBEDDED_AUTH = False
    assert password_grant("ada").status_code == 404
    assert refresh_grant("x" * 75).status_code == 404
    assert get_user("x").status_code == 404
    assert post("logout?scope=global").status_code == 404
    assert Client().get("/auth/v1/settings").status_code == 404
    assert not RefreshToken.objects.exists()


@pytest.mark.parametrize("login", ["ada@example.org", "ADA@EXAMPLE.ORG", "ada"])
def test_the_password_grant_answers_a_gotrue_session(ada: Any, login: str) -> None:
    before = int(time.time())
    response = password_grant(login)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"].startswith("max-age=0")
    session = response.json()
    person = person_of(ada)
    assert set(session) == SESSION_KEYS
    assert session["token_type"] == "bearer" and session["expires_in"] == 900
    assert before + 900 <= session["expires_at"] <= int(time.time()) + 900
    user = session["user"]
    assert set(user) == USER_KEYS
    assert (user["id"], user["aud"], user["role"], user["email"]) == (
        str(person.pk),
        "authenticated",
        "authenticated",
        ada.email,
    )
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert user["user_metadata"] == {"full_name": "Ada Lovelace"}
    assert user["identities"][0]["provider"] == "email" and user["is_anonymous"] is False
    assert user["created_at"].endswith("Z") and user["last_sign_in_at"] is not None
    claims = supabase_claims(session["access_token"])  # the same verification as a Supabase token
    assert claims["sub"] == str(person.pk) and claims["exp"] == session["expires_at"]
    assert (claims["aud"], claims["role"], claims["email"]) == ("authenticated", "authenticated", ada.email)
    assert uuid.UUID(claims["session_id"]) and claims["user_metadata"] == {"full_name": "Ada Lovelace"}
    assert claims["app_metadata"] == {"provider": "email", "providers": ["email"]}
    # Only the refresh token's hash is stored.
    stored = RefreshToken.objects.get(person=person)
    assert session["refresh_token"] not in str(RefreshToken.objects.values_list().get())
    assert stored.revoked_at is None and len(stored.token_hash) == 64
    assert AuditEvent.objects.filter(action="signin.password", outcome="ok", actor=ada).exists()


def test_the_issued_tokens_sign_in_to_the_api_as_bearer_and_as_the_dashboards_cookie(ada: Any) -> None:
    session = password_grant("ada@example.org").json()
    health = "/api/coordinator/health"
    assert Client().get(health).status_code == 401
    assert Client().get(health, HTTP_AUTHORIZATION=f"Bearer {session['access_token']}").status_code == 200
    # The browser keeps the whole response as its session cookie (@supabase/ssr): FedML reads it.
    cookie = cookie_header(session_json(session["access_token"], user=session["user"]))
    assert Client().get(health, HTTP_COOKIE=cookie).status_code == 200


@pytest.mark.parametrize(
    "login, password",
    [
        ("ada@example.org", "wrong password"),
        ("nobody@example.org", PASSWORD),
        ("ada@example.org", ""),
        ("ada\x00@example.org", PASSWORD),  # PostgreSQL could not even be asked
        ("\ud800", PASSWORD),
        ("a" * 400, PASSWORD),
        (5, PASSWORD),
        ("ada@example.org", ["x"]),
    ],
)
def test_bad_credentials_get_gotrues_invalid_credentials(ada: Any, login: Any, password: Any) -> None:
    response = password_grant(login, password)
    assert_error(response, 400, "invalid_credentials", "Invalid login credentials")
    assert not RefreshToken.objects.exists()


def test_errors_take_the_legacy_shape_without_the_api_version_header(ada: Any) -> None:
    response = post("token?grant_type=password", {"email": "ada", "password": "nope"}, version=False)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"}
    assert "X-Supabase-Api-Version" not in response


def test_users_who_cannot_sign_in(ada: Any) -> None:
    nopass = UserFactory(username="nopass")
    nopass.set_unusable_password()
    nopass.save()
    assert_error(password_grant("nopass", ""), 400, "invalid_credentials")
    assert_error(password_grant("nopass", "anything"), 400, "invalid_credentials")
    ada.is_active = False
    ada.save()
    assert_error(password_grant("ada"), 400, "user_banned", "User is banned")
    assert_error(password_grant("ada", "wrong"), 400, "invalid_credentials")  # no hint without the password


def test_failed_passwords_are_rate_limited_per_email(ada: Any) -> None:
    for _ in range(signin.FAILURES_ALLOWED):
        assert password_grant("ada@example.org", "guess").status_code == 400
    # Even the right password now waits; the email counts however it is spelled, from any address.
    limited = password_grant("ADA@example.org", REMOTE_ADDR="10.9.9.9")
    assert_error(limited, 429, "over_request_rate_limit", "Request rate limit reached")
    assert password_grant("ada", REMOTE_ADDR="10.9.9.9").status_code == 200  # the username is another key
    cache.clear()
    assert password_grant("ada@example.org").status_code == 200


def test_failed_passwords_are_rate_limited_per_client_address(ada: Any) -> None:
    for n in range(signin.FAILURES_ALLOWED):
        assert password_grant(f"user{n}@example.org", "guess", REMOTE_ADDR="10.1.1.1").status_code == 400
    assert password_grant("ada", REMOTE_ADDR="10.1.1.1").status_code == 429
    assert password_grant("ada", REMOTE_ADDR="10.1.1.2").status_code == 200


def test_behind_a_proxy_on_this_host_the_forwarded_client_is_counted(ada: Any) -> None:
    """The dashboard's rewrite: every request comes from the Next server on loopback."""
    for n in range(signin.FAILURES_ALLOWED):
        forwarded = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": f"10.{n}.0.1, 10.2.2.2"}
        assert password_grant(f"user{n}@example.org", "guess", **forwarded).status_code == 400
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    assert password_grant("ada", HTTP_X_FORWARDED_FOR="10.2.2.2", **via_proxy).status_code == 429
    assert password_grant("ada", HTTP_X_FORWARDED_FOR="10.2.2.2, 10.3.3.3", **via_proxy).status_code == 200
    # A remote peer's own X-Forwarded-For is not believed.
    assert password_grant("ada", REMOTE_ADDR="10.2.2.2", HTTP_X_FORWARDED_FOR="10.4.4.4").status_code == 429
    assert AuditEvent.objects.filter(action="signin.password", outcome="denied", remote_addr="10.2.2.2").count() == 10


@pytest.mark.parametrize(
    "content_type, data",
    [
        ("application/x-www-form-urlencoded", "email=ada&password=x"),  # what a cross-site form sends
        ("text/plain", '{"email": "ada", "password": "x"}'),
        ("multipart/form-data; boundary=x", "--x--"),
        ("application/json", "{not json"),
        ("application/json", "[1, 2]"),
        ("application/json", b"\xff\xfe"),
        ("application/json", ""),
        ("application/json", "[" * 2000 + "]" * 2000),  # deeper than FEDML_MAX_JSON_DEPTH: no RecursionError
    ],
)
def test_bodies_must_be_json_objects(ada: Any, content_type: str, data: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/auth/v1/token?grant_type=password", data, content_type=content_type, **VERSION)
    assert_error(response, 400, "bad_json")


def test_grant_types_and_methods(ada: Any) -> None:
    assert_error(post("token?grant_type=id_token", {}), 400, "invalid_credentials", "unsupported_grant_type")
    assert_error(post("token", {}), 400, "invalid_credentials")
    assert_error(post("token?grant_type=password", {"password": "x"}), 400, "validation_failed")
    assert_error(post("token?grant_type=password", {"phone": "+1555", "password": "x"}), 422, "phone_provider_disabled")
    assert Client().get("/auth/v1/token?grant_type=password").status_code == 405
    assert_error(post("signup", {"email": "new@example.org", "password": PASSWORD}), 422, "signup_disabled")
    assert Client().get("/auth/v1/settings").json()["external"]["email"] is True


def test_refresh_rotates_the_token_within_one_session(ada: Any) -> None:
    first = password_grant("ada").json()
    second = refresh_grant(first["refresh_token"])
    assert second.status_code == 200, second.content
    second = second.json()
    assert set(second) == SESSION_KEYS and second["refresh_token"] != first["refresh_token"]
    first_claims, second_claims = supabase_claims(first["access_token"]), supabase_claims(second["access_token"])
    assert first_claims["session_id"] == second_claims["session_id"] and second_claims["sub"] == first_claims["sub"]
    tokens = RefreshToken.objects.filter(person=person_of(ada))
    assert tokens.count() == 2 and tokens.filter(revoked_at__isnull=True).count() == 1
    third = refresh_grant(second["refresh_token"])
    assert third.status_code == 200 and third.json()["user"]["id"] == first["user"]["id"]


def _age_revocations(seconds: int) -> None:
    RefreshToken.objects.filter(revoked_at__isnull=False).update(
        revoked_at=timezone.now() - dt.timedelta(seconds=seconds)
    )


def test_reuse_of_a_rotated_token_ends_every_session_of_the_person(ada: Any) -> None:
    first = password_grant("ada").json()
    child = refresh_grant(first["refresh_token"]).json()
    other_device = password_grant("ada").json()
    _age_revocations(signin.REUSE_INTERVAL_SECONDS + 1)
    assert_error(
        refresh_grant(first["refresh_token"]), 400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
    )
    assert not RefreshToken.objects.filter(revoked_at__isnull=True).exists()
    assert_error(refresh_grant(child["refresh_token"]), 400, "refresh_token_already_used")
    assert_error(refresh_grant(other_device["refresh_token"]), 400, "refresh_token_already_used")
    assert AuditEvent.objects.filter(action="signin.refresh-reuse", outcome="denied").exists()


def test_a_token_rotated_moments_ago_gets_a_sibling(ada: Any) -> None:
    """The dashboard's middleware may refresh on a proxied call whose cookie never reaches the browser."""
    first = password_grant("ada").json()
    child = refresh_grant(first["refresh_token"]).json()
    sibling = refresh_grant(first["refresh_token"])
    assert sibling.status_code == 200, sibling.content
    sibling = sibling.json()
    assert (
        supabase_claims(sibling["access_token"])["session_id"] == supabase_claims(child["access_token"])["session_id"]
    )
    assert refresh_grant(child["refresh_token"]).status_code == 200
    assert refresh_grant(sibling["refresh_token"]).status_code == 200


def test_unknown_missing_and_banned_refresh_tokens(ada: Any) -> None:
    session = password_grant("ada").json()
    token = session["refresh_token"]
    not_found = "Invalid Refresh Token: Refresh Token Not Found"
    assert_error(
        refresh_grant(token[:-1] + ("A" if token[-1] != "A" else "B")), 400, "refresh_token_not_found", not_found
    )
    assert_error(refresh_grant("short"), 400, "refresh_token_not_found")
    assert_error(refresh_grant("\x00" * 75), 400, "validation_failed")
    assert_error(post("token?grant_type=refresh_token", {}), 400, "validation_failed", "refresh_token required")
    ada.is_active = False
    ada.save()
    assert_error(refresh_grant(token), 400, "user_banned")
    assert RefreshToken.objects.get().revoked_at is None  # a refusal rotates nothing


def test_get_user_answers_the_gotrue_user(ada: Any) -> None:
    session = password_grant("ada").json()
    response = get_user(session["access_token"])
    assert response.status_code == 200, response.content
    assert response.json() == session["user"]
    assert_error(get_user(None), 401, "no_authorization")
    assert_error(get_user(session["access_token"] + "x"), 403, "bad_jwt")
    assert_error(get_user("x" * 9000), 403, "bad_jwt")
    person = person_of(ada)
    person.delete()
    assert_error(get_user(session["access_token"]), 403, "user_not_found")


def test_logout_revokes_the_sessions_and_get_user_then_reports_none(ada: Any) -> None:
    session = password_grant("ada").json()
    refreshed = refresh_grant(session["refresh_token"]).json()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {refreshed['access_token']}"}
    assert_error(post("logout?scope=everything", **bearer), 400, "validation_failed")
    response = post("logout?scope=global", **bearer)  # auth-js sends no body
    assert response.status_code == 204 and response.content == b""
    assert not RefreshToken.objects.filter(revoked_at__isnull=True).exists()
    # auth-js turns session_not_found into AuthSessionMissingError and drops the stored session.
    assert_error(get_user(refreshed["access_token"]), 403, "session_not_found")
    assert_error(refresh_grant(refreshed["refresh_token"]), 400, "refresh_token_already_used")
    assert_error(post("logout"), 401, "no_authorization")
    assert AuditEvent.objects.filter(action="signin.logout", outcome="ok", actor=ada).exists()


def test_a_supabase_provisioned_person_has_no_password_to_sign_in_with(settings: Any) -> None:
    person = Person.objects.create(email="supa@example.org")
    get_user_model().objects.create_user(username=f"supabase-{person.pk}", email="supa@example.org")
    assert_error(password_grant("supa@example.org", ""), 400, "invalid_credentials")
    assert_error(password_grant("supa@example.org", "x"), 400, "invalid_credentials")


@pytest.mark.django_db(transaction=True)
def test_a_sign_in_the_database_cannot_serve_is_gotrues_503(client: Any, ada: Any) -> None:
    with unreachable_database():
        answer = client.post(
            "/auth/v1/token?grant_type=password",
            {"email": "ada@example.org", "password": "x" * 12},
            content_type="application/json",
        )

    assert answer.status_code == 503 and answer["Retry-After"] == "5"
    assert answer.json()["error_code"] == "unexpected_failure"
