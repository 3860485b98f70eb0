"""API tokens created in the Django admin: the secret is shown once, in that response's body only,
never in a message (Django keeps messages in a signed but unencrypted cookie), a cookie, the
session or a later page. Real database, Django test client."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import ApiToken, AuditEvent
from accounts.services import api_token_authenticate
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SECRET_RE = re.compile(r"fedml_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")


def test_a_new_tokens_secret_is_in_the_page_body_only_and_never_in_a_cookie_or_message() -> None:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    owner = UserFactory()

    response = client.post("/admin/accounts/apitoken/add/", {"user": owner.pk, "name": "ci"})

    assert response.status_code == 200, response.status_code  # the page itself, not a redirect
    found = SECRET_RE.search(response.content.decode())
    assert found is not None, response.content.decode()
    secret = found.group()
    token = ApiToken.objects.get(name="ci")
    assert secret.startswith(f"fedml_{token.prefix}_") and api_token_authenticate(secret) == owner
    assert "no-store" in response["Cache-Control"]
    assert secret not in response.cookies.output()  # every Set-Cookie header of the response
    assert not [m for m in response.context["messages"]]
    assert AuditEvent.objects.filter(action="token.create", via="admin").count() == 1

    later = client.get("/admin/accounts/apitoken/")
    assert later.status_code == 200
    assert all(secret not in str(message) for message in later.context["messages"])
    assert secret not in later.content.decode() and secret not in later.cookies.output()
    assert secret not in client.cookies.output()  # nothing the browser keeps
    assert all(secret not in str(value) for value in client.session.values())
