"""Embedded Supabase Auth: the part of GoTrue's HTTP API (`/auth/v1/...`) that @supabase/auth-js
uses to sign in with a password, keep the session fresh, read the user and sign out.

FedML's own users (Django users with a password, `manage.py user_create`) sign in with their email
or username; the tokens are those Supabase Auth would issue (accounts.services.signin), so the
dashboard, pointed at FedML as its Supabase URL, works unchanged. Off unless FEDML_EMBEDDED_AUTH:
then every path here is 404.

Errors are GoTrue's: with the request header `X-Supabase-Api-Version: 2024-01-01` (auth-js always
sends it) the body is {"code": "<error code>", "message": "..."} and the header is echoed;
without it, the older {"code": <status>, "error_code": "...", "msg": "..."}.

CSRF: the views are csrf_exempt, like any token endpoint, but take only `application/json`
bodies, which a cross-site form cannot send; logout and /user need a bearer access token.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

import jwt
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.authentication import MAX_TOKEN_CHARS, supabase_claims
from accounts.models import Person
from accounts.services import signin
from accounts.services.signin import SigninError
from core.parsers import json_loads

API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION_2024 = dt.date(2024, 1, 1)
LOGOUT_SCOPES = ("global", "local", "others")


def _api_version(request: HttpRequest) -> dt.date | None:
    """GoTrue's DetermineClosestAPIVersion: the newest known version not after the one asked for."""
    raw = request.headers.get(API_VERSION_HEADER, "").strip()
    try:
        asked = dt.date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        return None
    return API_VERSION_2024 if asked is not None and asked >= API_VERSION_2024 else None


def error(request: HttpRequest, status: int, code: str, message: str) -> JsonResponse:
    if _api_version(request) is not None:
        response = JsonResponse({"code": code, "message": message}, status=status)
        response[API_VERSION_HEADER] = API_VERSION_2024.isoformat()
        return response
    return JsonResponse({"code": status, "error_code": code, "msg": message}, status=status)


def _gotrue_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """404 unless embedded auth is on; a SigninError becomes GoTrue's error response."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.EMBEDDED_AUTH:
            raise Http404("embedded auth is off (FEDML_EMBEDDED_AUTH)")
        try:
            return view(request, *args, **kwargs)
        except SigninError as exc:
            return error(request, exc.status, exc.code, exc.message)
        except OperationalError:  # GoTrue's error shape, as the dashboard's client reads it, never a 500 page
            response = error(request, 503, "unexpected_failure", "the database is unavailable; retry in 5 s")
            response["Retry-After"] = "5"
            return response

    return csrf_exempt(never_cache(wrapper))


def _timestamp(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def user_json(person: Person) -> dict[str, Any]:
    """A person as GoTrue's user object."""
    user = person.django_user
    created, updated = _timestamp(person.created_at), _timestamp(person.updated_at)
    last_sign_in = _timestamp(getattr(user, "last_login", None))
    email = person.email or ""
    identity_id = str(uuid.uuid5(person.pk, "email"))
    return {
        "id": str(person.pk),
        "aud": settings.SUPABASE_JWT_AUDIENCE,
        "role": "authenticated",
        "email": email,
        "email_confirmed_at": created,  # FedML's users are made by its admins: trusted addresses
        "phone": "",
        "confirmed_at": created,
        "last_sign_in_at": last_sign_in,
        "app_metadata": dict(signin.APP_METADATA),
        "user_metadata": signin.user_metadata(person),
        "identities": [
            {
                "identity_id": identity_id,
                "id": str(person.pk),
                "user_id": str(person.pk),
                "identity_data": {
                    "email": email,
                    "email_verified": True,
                    "phone_verified": False,
                    "sub": str(person.pk),
                },
                "provider": "email",
                "last_sign_in_at": last_sign_in,
                "created_at": created,
                "updated_at": updated,
                "email": email,
            }
        ],
        "created_at": created,
        "updated_at": updated,
        "is_anonymous": False,
    }


def _session_json(issued: signin.IssuedSession) -> JsonResponse:
    issued.person.refresh_from_db()
    return JsonResponse(
        {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "expires_at": issued.expires_at,
            "refresh_token": issued.refresh_token,
            "user": user_json(issued.person),
        }
    )


def _issuer(request: HttpRequest) -> str:
    return request.build_absolute_uri("/auth/v1")


def _address(request: HttpRequest) -> str:
    """The client's address, for rate limits and the audit log.

    Behind the dashboard's Next.js rewrite every sign-in comes from the Next server, on this host:
    from a loopback peer, the last X-Forwarded-For entry (the one that proxy appended) is the client.
    """
    peer = request.META.get("REMOTE_ADDR", "") or "-"
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    return forwarded[:64] if loopback and forwarded else peer


def _json_body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise SigninError(400, "bad_json", "Could not parse request body as JSON: the Content-Type must be JSON")
    try:
        parsed = json_loads(request.body or b"null")
    except RequestDataTooBig:
        raise SigninError(400, "bad_json", "Could not parse request body as JSON: the body is too large") from None
    except ValueError as exc:  # bad JSON, nested too deep, or bytes that are not UTF-8
        raise SigninError(400, "bad_json", f"Could not parse request body as JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise SigninError(400, "bad_json", "Could not parse request body as JSON: an object is required")
    return parsed


@_gotrue_view
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    """POST /token?grant_type=password {email, password} | ?grant_type=refresh_token {refresh_token}."""
    grant_type = request.GET.get("grant_type", "")
    body = _json_body(request)
    if grant_type == "password":
        if body.get("phone") and not body.get("email"):
            raise SigninError(422, "phone_provider_disabled", "Phone logins are disabled")
        if not body.get("email"):
            raise SigninError(400, "validation_failed", "missing email or phone")
        issued = signin.password_signin(
            login=body.get("email"), password=body.get("password"), address=_address(request), issuer=_issuer(request)
        )
    elif grant_type == "refresh_token":
        issued = signin.refresh_signin(
            refresh_token=body.get("refresh_token"), address=_address(request), issuer=_issuer(request)
        )
    else:
        raise SigninError(400, "invalid_credentials", "unsupported_grant_type")
    return _session_json(issued)


def _bearer_person(request: HttpRequest) -> tuple[Person, dict[str, Any]]:
    """The person of the request's access token, checked as GoTrue's requireAuthentication does."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise SigninError(401, "no_authorization", "This endpoint requires a valid Bearer token")
    try:
        if len(credential) > MAX_TOKEN_CHARS:
            raise jwt.InvalidTokenError("token too long")
        claims = supabase_claims(credential)
        subject = uuid.UUID(str(claims["sub"]))
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise SigninError(403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {exc}") from None
    person = Person.objects.select_related("django_user").filter(pk=subject).first()
    if person is None or person.django_user is None:
        raise SigninError(403, "user_not_found", "User from sub claim in JWT does not exist")
    if "session_id" in claims and not signin.person_has_session(person):
        raise SigninError(403, "session_not_found", "Session from session_id claim in JWT does not exist")
    if not person.django_user.is_active:
        raise SigninError(403, "user_banned", "User is banned")
    return person, claims


@_gotrue_view
@require_GET
def user(request: HttpRequest) -> HttpResponse:
    """GET /user: the signed-in user (bearer access token)."""
    person, _ = _bearer_person(request)
    return JsonResponse(user_json(person))


@_gotrue_view
@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """POST /logout?scope=global|local|others: revoke the person's refresh tokens (every session)."""
    scope = request.GET.get("scope", "global")
    if scope not in LOGOUT_SCOPES:
        raise SigninError(400, "validation_failed", f'Unsupported logout scope "{scope}"')
    person, _ = _bearer_person(request)
    signin.signout(person=person, address=_address(request))
    return HttpResponse(status=204)


@_gotrue_view
@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    """POST /signup: FedML's users are made by its admins (`manage.py user_create`, the admin)."""
    raise SigninError(422, "signup_disabled", "Signups not allowed for this instance")


@_gotrue_view
@require_GET
def auth_settings(request: HttpRequest) -> HttpResponse:
    """GET /settings: what this Auth server offers (GoTrue's shape)."""
    external = {name: False for name in ("anonymous_users", "apple", "azure", "github", "google", "phone")}
    return JsonResponse(
        {
            "external": {**external, "email": True},
            "disable_signup": True,
            "mailer_autoconfirm": False,
            "phone_autoconfirm": False,
            "sms_provider": "",
            "saml_enabled": False,
        }
    )
