"""The audit log: who did what, when, from where, and the outcome."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from accounts.models import AuditEvent
from core.counters import window_count, window_take

logger = logging.getLogger(__name__)

# Anonymous refusals cost an attacker nothing, so they are recorded in bounded numbers: at most
# this many rows per client address per window (all paths, HTTP and websockets together) ...
ANONYMOUS_ROWS_PER_WINDOW = 30
ANONYMOUS_WINDOW_SECONDS = 60
# ... and the refusals beyond them are counted (in the shared cache) and reported on the address's
# next row. A count nobody reports within this time is dropped.
SUPPRESSED_KEPT_SECONDS = 7 * 24 * 3600


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


def _address_key(kind: str, address: str) -> str:
    digest = hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]
    return f"fedml:audit-anonymous:{kind}:{digest}"


def anonymous_window_key(address: str) -> str:
    """The cache key counting an address's anonymous refusals in its current window (it expires with it)."""
    return _address_key("window", address)


def audit_refusal_record(
    *,
    actor: Any,
    action: str,
    target: str = "",
    remote_addr: str = "",
    via: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """A refused request or websocket. A signed-in caller's refusals are each recorded; an anonymous
    caller's at most ANONYMOUS_ROWS_PER_WINDOW per address and window, the rest counted and reported
    as `suppressed_before` on the address's next row. Returns the row, or None when only counted."""
    if getattr(actor, "is_authenticated", False):
        return audit_record(
            actor=actor, action=action, outcome="denied", target=target, remote_addr=remote_addr, via=via, detail=detail
        )
    written = window_count(anonymous_window_key(remote_addr), timeout=ANONYMOUS_WINDOW_SECONDS)
    if written is not None and written > ANONYMOUS_ROWS_PER_WINDOW:  # None: no cache, record it
        window_count(_address_key("suppressed", remote_addr), timeout=SUPPRESSED_KEPT_SECONDS)
        if written == ANONYMOUS_ROWS_PER_WINDOW + 1:
            logger.warning(
                "anonymous refusals from %r: more than %d in %d s; the rest of the window is counted, not recorded",
                remote_addr,
                ANONYMOUS_ROWS_PER_WINDOW,
                ANONYMOUS_WINDOW_SECONDS,
            )
        return None
    detail = dict(detail or {})
    suppressed = window_take(_address_key("suppressed", remote_addr))
    if suppressed:
        detail["suppressed_before"] = suppressed  # refusals from this address not recorded since its last row
    if written == ANONYMOUS_ROWS_PER_WINDOW:
        detail["limit"] = (
            f"the {ANONYMOUS_ROWS_PER_WINDOW}th anonymous refusal from this address within "
            f"{ANONYMOUS_WINDOW_SECONDS} s: later ones in the window are counted, not recorded"
        )
    return audit_record(
        actor=actor, action=action, outcome="denied", target=target, remote_addr=remote_addr, via=via, detail=detail
    )
