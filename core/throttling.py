"""Per-identity rate limits on the API's requests that change something, counted in Django's cache.

A fixed window per identity (the signed-in person, else the client address): the window's first
request creates its counter (`cache.add`), every request increments it (`cache.incr`, atomic in
Redis and in the local-memory cache, so a burst of concurrent requests cannot slip past it), and
a request over the limit is refused with 429 and `Retry-After` (the seconds left in the window).
DRF checks throttles after authentication and permissions and before the view runs, so a refused
request costs no view work (authentication's lookup and its audit row aside), and the count itself
no query. Without a reachable cache nothing is counted (core/counters.py). Each identity's
windows start at an offset of their own, so refused clients do not all come back at once.
Safe methods (GET, HEAD, OPTIONS) are not counted.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import Throttled
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.counters import window_count

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int
    text: str  # as configured, e.g. "30/min": what a refusal names


def parse_rate(text: str) -> Rate:
    """`<count>/<s|sec|second|m|min|minute|h|hour|d|day>` (settings.py has already checked the form)."""
    count, _, period = text.partition("/")
    try:
        rate = Rate(count=int(count), seconds=PERIOD_SECONDS[period[:1]], text=text)
    except (KeyError, ValueError):
        raise ImproperlyConfigured(f"a rate must look like 30/min, got {text!r}") from None
    if rate.count < 1:
        raise ImproperlyConfigured(f"a rate must allow at least one request, got {text!r}")
    return rate


class RateLimited(Throttled):
    """429: names the limit that was reached and whose it is; `wait` is the Retry-After."""

    def __init__(self, *, scope: str, rate: Rate, per: str, wait: int) -> None:
        self.scope = scope
        self.limit = rate.text
        self.per = per
        detail = f"too many {scope} requests: the limit is {rate.text} per {per}; retry in {wait} s"
        super().__init__(wait=wait, detail=detail)
        self.detail = detail  # without DRF's "Expected available in ..." suffix: `retry in` says it


def _identity(request: Request) -> tuple[str, str]:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}", "person"
    # Anonymous: the peer address, as the audit log records it (X-Forwarded-For is not believed).
    return f"addr:{request.META.get('REMOTE_ADDR', '') or '-'}", "client address"


class IdentityRateThrottle(BaseThrottle):
    """Counts a view's unsafe requests per identity; the rate is `settings.<setting>` (None: off),
    read at each request so that a changed setting applies at once."""

    scope = ""
    setting = ""

    def allow_request(self, request: Request, view: Any) -> bool:
        text = getattr(settings, self.setting)
        if request.method in SAFE_METHODS or text is None:
            return True
        rate = parse_rate(text)
        ident, per = _identity(request)
        offset = zlib.crc32(ident.encode()) % rate.seconds
        now = time.time()
        window = math.floor((now - offset) / rate.seconds)
        ends_at = (window + 1) * rate.seconds + offset
        left = max(1, math.ceil(ends_at - now))
        count = window_count(f"fedml:rate:{self.scope}:{ident}:{window}", timeout=left + 1)
        if count is None or count <= rate.count:  # None: the cache is down; limits wait for it
            return True
        raise RateLimited(scope=self.scope, rate=rate, per=per, wait=left)


class ControlRateThrottle(IdentityRateThrottle):
    """Start, stop, enroll, revoke, keys, joins and project creation: FEDML_RATE_CONTROL."""

    scope = "control"
    setting = "RATE_CONTROL"
