"""Window counters in Django's cache (Redis when REDIS_URL is set), shared by the rate limits and
the bounded audit of anonymous refusals. A counter is never a record: when the cache cannot be
reached, callers get None and carry on (a request is served, a refusal is written), so a Redis
outage never turns into 5xx answers."""

from __future__ import annotations

import contextlib
import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)


def window_count(key: str, *, timeout: int) -> int | None:
    """This event's number in the key's window (atomic where the cache's incr is); None without a cache."""
    try:
        cache.add(key, 0, timeout=timeout)
        try:
            return int(cache.incr(key))
        except ValueError:  # the key expired between add and incr: a new window
            cache.add(key, 1, timeout=timeout)
            return 1
    except Exception:  # the cache backend's own connection errors: no counting for now
        logger.warning("the cache is unreachable: %s not counted", key.split(":", 2)[1], exc_info=True)
        return None


def window_take(key: str) -> int:
    """Read a counter and subtract what was read (what is counted meanwhile stays); 0 without a cache."""
    try:
        taken = int(cache.get(key) or 0)
        if taken:
            with contextlib.suppress(ValueError):  # expired meanwhile: nothing left to subtract from
                cache.decr(key, taken)
        return taken
    except Exception:
        logger.warning("the cache is unreachable: %s not read", key, exc_info=True)
        return 0
