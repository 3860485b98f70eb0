"""What every FedML management command shares: a service call whose errors become CommandError."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.management.base import CommandError

from accounts.services import audit_record
from core.errors import ApplicationError

T = TypeVar("T")


def call(service: Callable[..., T], **kwargs: Any) -> T:
    """Call a service; its application errors become CommandError naming the field.

    Requests (starting, stopping) are audited as the operating-system user who ran the command:
    management commands run on the host, with its database credentials, so they are trusted.
    """
    audited = "request" in service.__name__ or service.__name__.startswith("node_enrollment")
    try:
        result = service(**kwargs)
    except ApplicationError as exc:
        if audited:
            _audit(service.__name__, "error", exc.message)
        prefix = f"{exc.field}: " if exc.field and not exc.message.startswith(exc.field) else ""
        raise CommandError(prefix + exc.message) from None
    if audited:
        _audit(service.__name__, "ok", "")
    return result


def _audit(action: str, outcome: str, detail: str) -> None:
    audit_record(
        actor=f"cli:{getpass.getuser()}", action=action, outcome=outcome, via="command", detail={"detail": detail[:500]}
    )
