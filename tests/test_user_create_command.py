"""`manage.py user_create`: a FedML user (username = email) and its person, the password from stdin."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import AuditEvent, Person
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def create(*args: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    kwargs: dict[str, Any] = {"stdout": out}
    if stdin is not None:
        kwargs["stdin"] = io.StringIO(stdin)
    call_command("user_create", *args, **kwargs)
    return out.getvalue().strip()


def test_creates_a_client_with_its_person_and_prints_the_person_id() -> None:
    printed = create(
        "--email", "grace@example.org", "--display-name", "Grace Hopper", "--password-stdin", stdin=PASSWORD + "\n"
    )
    person = Person.objects.select_related("django_user").get(pk=uuid.UUID(printed))
    user = person.django_user
    assert (user.username, user.email, user.is_staff, user.is_superuser) == (
        "grace@example.org",
        "grace@example.org",
        False,
        False,
    )
    assert user.check_password(PASSWORD) and not user.check_password(PASSWORD + "\n")
    assert (person.email, person.display_name, person.role) == ("grace@example.org", "Grace Hopper", "client")
    assert Person.objects.filter(django_user=user).count() == 1  # the post_save hook made no second row
    assert AuditEvent.objects.filter(action="user.create", outcome="ok", actor_label__startswith="cli:").exists()


def test_staff_are_admins_and_without_a_password_nobody_can_sign_in_yet() -> None:
    person = Person.objects.get(pk=create("--email", "ops@example.org", "--staff"))
    assert person.role == "admin" and person.display_name == "ops@example.org"
    assert person.django_user.is_staff and not person.django_user.has_usable_password()


def test_the_new_user_signs_in_with_the_embedded_auth(settings: Any) -> None:
    from django.test import Client

    settings.EMBEDDED_AUTH = True
    settings.SUPABASE_JWT_SECRET = "embedded-auth-secret-of-at-least-32-characters"
    settings.SUPABASE_JWKS_URL = ""
    person_id = create("--email", "lin@example.org", "--password-stdin", stdin=PASSWORD + "\r\n")
    response = Client().post(
        "/auth/v1/token?grant_type=password",
        {"email": "lin@example.org", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["user"]["id"] == person_id


@pytest.mark.parametrize(
    "args, stdin, option",
    [
        (["--email", "not-an-email"], None, "--email"),
        (["--email", ""], None, "--email"),
        (["--email", "a\x00b@example.org"], None, "--email"),
        (["--email", "x" * 140 + "@example.org"], None, "--email"),
        (["--email", "new@example.org", "--password-stdin"], "", "--password-stdin"),
        (["--email", "new@example.org", "--password-stdin"], "\n", "--password-stdin"),
        (["--email", "new@example.org", "--password-stdin"], "123\n", "--password-stdin"),  # too weak
        (["--email", "new@example.org", "--password-stdin"], "new@example.org\n", "--password-stdin"),
        (["--email", "new@example.org", "--display-name", " "], None, "--display-name"),
    ],
)
def test_bad_input_is_a_command_error_naming_the_option(args: list[str], stdin: str | None, option: str) -> None:
    with pytest.raises(CommandError) as error:
        create(*args, stdin=stdin)
    assert str(error.value).startswith(f"{option}: ")
    assert not get_user_model().objects.exists() and not Person.objects.exists()


@pytest.mark.parametrize("existing", ["taken@example.org", "TAKEN@example.org"])
def test_an_existing_email_or_username_is_refused(existing: str) -> None:
    UserFactory(username="someone", email=existing)
    UserFactory(username="other@example.org", email="")
    for email in ("taken@example.org", "Other@Example.org"):
        with pytest.raises(CommandError, match=r"^--email: .*already exists"):
            create("--email", email)
    assert get_user_model().objects.count() == 2


def test_a_password_is_never_taken_from_the_command_line() -> None:
    with pytest.raises(CommandError, match="unrecognized arguments"):
        create("--email", "new@example.org", "--password", PASSWORD)
    assert not get_user_model().objects.exists()
