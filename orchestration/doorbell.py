"""The channel layer as a doorbell: "something new is in the database", never the record.

Layers drop messages past capacity and the in-memory layer cannot cross processes, so every
subscriber re-reads the database after a ring and also on a short interval. Rings are sent by
one background thread with its own event loop (so the log writer never waits on Redis), and
coalesced: many rings for one group before the thread runs become one message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

RING_TYPE = "doorbell.ring"


def log_group(kind: str, owner_id: Any) -> str:
    return f"log.{kind}.{owner_id}"


def events_group(project_id: Any) -> str:
    return f"events.{project_id}"


def crosses_processes() -> bool:
    """The in-memory layer reaches only its own process (and its own event loop)."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return bool(backend) and not backend.endswith("InMemoryChannelLayer")


class _Bell(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="doorbell", daemon=True)
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.sent = 0

    def ring(self, group: str) -> None:
        with self._lock:
            self._pending.add(group)
        self._wake.set()

    def run(self) -> None:
        from channels.layers import get_channel_layer

        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                groups, self._pending = self._pending, set()
            for group in groups:
                try:
                    loop.run_until_complete(layer.group_send(group, {"type": RING_TYPE}))
                    self.sent += 1
                except Exception:  # a missed ring only delays a reader until its next poll
                    logger.warning("doorbell ring for %s failed", group, exc_info=True)


_bell: _Bell | None = None
_bell_lock = threading.Lock()


def ring(group: str) -> None:
    global _bell
    if not crosses_processes():
        return
    if _bell is None:
        with _bell_lock:
            if _bell is None:
                _bell = _Bell()
                _bell.start()
    _bell.ring(group)
