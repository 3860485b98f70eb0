"""The audit log: who did what, when, from where, and the outcome."""

from __future__ import annotations

from typing import Any

from accounts.models import AuditEvent


def _storable(value: Any, limit: int = 2000) -> Any:
    """What a hostile request put in an audit record, made storable anywhere: PostgreSQL refuses
    NUL in text and jsonb, and lone surrogates cannot be encoded as UTF-8."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")[:limit]
    if isinstance(value, dict):
        return {_storable(str(key), 200): _storable(item, limit) for key, item in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_storable(item, limit) for item in value[:50]]
    return value


def audit_record(
    *,
    actor: Any,
    action: str,
    outcome: str,
    target: str = "",
    remote_addr: str = "",
    via: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    user = actor if getattr(actor, "is_authenticated", False) else None
    label = str(actor) if isinstance(actor, str) else (user.get_username() if user else "anonymous")
    return AuditEvent.objects.create(
        actor=user,
        actor_label=_storable(label, 200),
        action=_storable(action, 60),
        target=_storable(str(target), 200),
        outcome=outcome,
        remote_addr=_storable(remote_addr, 64),
        via=via,
        detail=_storable(detail or {}),
    )
