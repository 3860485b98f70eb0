"""Running a test's coroutine in an event loop of its own, with a bounded clean-up.

`asyncio.run` waits for ever for the tasks it cancels at the end. In-process consumers share
Channels' process-wide channel layer, and channels_redis keeps receive state (locks, counters,
the loop that receives) across event loops: a doorbell listener cancelled in one loop may keep
waiting on state another loop left behind, and `asyncio.run` then hangs the suite (seen on CI's
PostgreSQL + Redis leg). Here leftover tasks get 10 s to end; a task that has not is reported
by asyncio's own "Task was destroyed but it is pending" log, and the test goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CLEANUP_SECONDS = 10.0


def run_bounded(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=CLEANUP_SECONDS))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
