"""FedML's own system checks (run by every management command: `check`, `migrate`, `runsupervisor`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning

DEVELOPMENT_SECRET_KEY = "fedml.W001"


@register(Tags.security)
def development_secret_key_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Settings refuse the development key where FedML serves other hosts; on this machine alone it
    is allowed, but said at every start."""
    if not getattr(settings, "DEVELOPMENT_SECRET_KEY", False):
        return []
    return [
        CheckWarning(
            "DJANGO_SECRET_KEY is unset (or the development key): FedML signs with a key published in its "
            "repository, so anyone can forge what Django signs.",
            hint="Fine on your own machine. Anywhere else set DJANGO_SECRET_KEY to a random value of at least "
            "50 characters (python -c 'import secrets; print(secrets.token_urlsafe(50))').",
            id=DEVELOPMENT_SECRET_KEY,
        )
    ]
