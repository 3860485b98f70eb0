"""Websocket consumers: follow a session's log, a run's log, or a project's events (docs/feeds.md)."""

from orchestration.consumers.events import ProjectEventsConsumer
from orchestration.consumers.follow import (
    BATCH,
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    WINDOW,
    FollowConsumer,
)
from orchestration.consumers.logs import RunLogConsumer, SessionLogConsumer

__all__ = [
    "BATCH",
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_NOT_FOUND",
    "CLOSE_UNAUTHENTICATED",
    "WINDOW",
    "FollowConsumer",
    "ProjectEventsConsumer",
    "RunLogConsumer",
    "SessionLogConsumer",
]
