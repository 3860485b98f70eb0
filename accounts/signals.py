"""FedML's own users (admin, commands) get a person row too, as soon as they exist."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save


def _person_for_new_user(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if not created or raw or getattr(instance, "_fedml_person_follows", False):
        return
    from accounts.services.people import person_ensure_for_user

    person_ensure_for_user(user=instance)


def connect() -> None:
    post_save.connect(_person_for_new_user, sender=settings.AUTH_USER_MODEL, dispatch_uid="fedml-person-for-user")
