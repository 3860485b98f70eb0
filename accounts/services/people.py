"""People (table `users`): FedML's own users and the Supabase users who sign in."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Person, UserRole
from accounts.services.audit import audit_record
from core.errors import Conflict, InvalidInput

logger = logging.getLogger(__name__)

METADATA_MAX_BYTES = 16 * 1024


def _storable_text(value: Any, limit: int) -> str | None:
    """A claim's string as PostgreSQL can hold it (no NUL, no lone surrogate), or None."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > limit:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value.strip()


def _storable_metadata(metadata: Any) -> dict[str, Any]:
    """A token's user_metadata, kept only if any database can store it (else {})."""
    if not isinstance(metadata, dict):
        return {}
    try:
        text = json.dumps(metadata, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return {}
    if "\\u0000" in text or len(text.encode("utf-8")) > METADATA_MAX_BYTES:
        return {}
    return metadata


def _display_name(*, email: str | None, metadata: dict[str, Any]) -> str | None:
    for key in ("full_name", "name", "display_name"):
        value = _storable_text(metadata.get(key), 10_000)
        if value:
            return value[:200]
    return email


def person_ensure_for_user(*, user: AbstractBaseUser) -> Person | None:
    """The person of a Django user, created if missing (FedML's own users get a row too).

    None only on Supabase when the user is not an auth user: there `users.id` references `auth.users`.
    """
    person = Person.objects.filter(django_user=user).first()
    if person is not None:
        return person
    staff = bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    email = getattr(user, "email", "") or None
    try:
        with transaction.atomic():
            return Person.objects.create(
                django_user=user,
                email=email,
                display_name=(user.get_full_name() if hasattr(user, "get_full_name") else "") or user.get_username(),
                role=UserRole.ADMIN if staff else UserRole.CLIENT,
            )
    except IntegrityError:
        person = Person.objects.filter(django_user=user).first()
        if person is None:
            logger.warning("no person row for %s: not an auth user of this Supabase project", user)
        return person


def _link_django_user(person: Person, *, email: str | None) -> None:
    """Give a provisioned person its Django user (`supabase-<sub>`, no usable password)."""
    username = f"supabase-{person.pk}"
    user_model = get_user_model()
    try:
        with transaction.atomic():
            user = user_model.objects.filter(username=username, person__isnull=True).first()
            if user is None:
                user = user_model(username=username, email=email or "")
                user.set_unusable_password()
                user._fedml_person_follows = True  # this person, not a fresh one (accounts.signals)
                user.save()
            Person.objects.filter(pk=person.pk, django_user__isnull=True).update(django_user=user)
    except IntegrityError:  # another request linked one first
        pass


def person_provision(*, subject: uuid.UUID, email: str | None, metadata: dict[str, Any]) -> Person | None:
    """A verified Supabase user, by its `sub`: found, or (when allowed) created with a Django user.

    None if unknown and SUPABASE_AUTO_PROVISION is off, or if the person's Django user is inactive.
    """
    person = Person.objects.select_related("django_user").filter(pk=subject).first()
    if person is None and not settings.SUPABASE_AUTO_PROVISION:
        return None
    if person is None:
        email = _storable_text(email, 320)
        metadata = _storable_metadata(metadata)
        try:
            with transaction.atomic():
                person = Person.objects.create(
                    id=subject,
                    email=email,
                    display_name=_display_name(email=email, metadata=metadata),
                    metadata=metadata,
                    role=UserRole.CLIENT,
                )
        except IntegrityError:  # another request provisioned it first
            person = Person.objects.select_related("django_user").filter(pk=subject).first()
            if person is None:  # on Supabase: `users.id` must be an auth user's id
                logger.warning("cannot provision person %s: not an auth user of this Supabase project", subject)
                return None
    if person.django_user_id is None:
        _link_django_user(person, email=person.email)
        person = Person.objects.select_related("django_user").get(pk=subject)
    if person.django_user is None or not person.django_user.is_active:
        return None
    return person


@transaction.atomic
def person_create_with_user(
    *,
    email: str,
    display_name: str | None = None,
    staff: bool = False,
    password: str | None = None,
    actor: Any,
    via: str,
) -> Person:
    """A FedML user who signs in with email and password (username = email), and its person.

    Without a password the user cannot sign in until one is set (admin)."""
    email = get_user_model().objects.normalize_email((email or "").strip())
    if _storable_text(email, 150) is None:
        raise InvalidInput("an email address of at most 150 characters is required", field="email")
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(f"{email!r} is not a valid email address", field="email") from None
    display = None
    if display_name is not None:
        display = _storable_text(display_name, 200)
        if display is None:
            raise InvalidInput("the display name must be 1-200 characters of text", field="display_name")
    user_model = get_user_model()
    if user_model.objects.filter(Q(username__iexact=email) | Q(email__iexact=email)).exists():
        raise Conflict(f"a user with the email {email!r} already exists", field="email")
    user = user_model(username=email, email=email, is_staff=staff)
    if password is not None:
        if not password or "\x00" in password:
            raise InvalidInput("the password is empty or holds a NUL character", field="password")
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise InvalidInput(" ".join(exc.messages), field="password") from None
        user.set_password(password)
    else:
        user.set_unusable_password()
    user._fedml_person_follows = True  # created below, with its role and name
    try:
        with transaction.atomic():
            user.save()
            person = Person.objects.create(
                django_user=user,
                email=email,
                display_name=display or email,
                role=UserRole.ADMIN if staff else UserRole.CLIENT,
            )
    except IntegrityError as exc:  # a concurrent creation, or (on Supabase) no auth user with a fresh id
        raise Conflict(f"cannot create the user {email!r}: {exc}", field="email") from None
    audit_record(actor=actor, action="user.create", outcome="ok", target=f"user {email} ({person.pk})", via=via)
    return person


def person_of(user: Any) -> Person | None:
    """The signed-in user's person (None for anonymous)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "_fedml_person", None)
    if cached is None:
        cached = person_ensure_for_user(user=user)
        user._fedml_person = cached
    return cached
