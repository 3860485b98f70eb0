"""Following a project's events: status changes of its sessions and runs, and finished rounds."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from accounts import permissions
from accounts import selectors as accounts_selectors
from orchestration import feeds
from orchestration.consumers.follow import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    Follow,
    FollowConsumer,
    int_param,
    uuid_or_none,
)
from orchestration.models import Project


@database_sync_to_async
def _load_project(project_id: Any, user: Any) -> tuple[Project | None, bool, bool, Any]:
    # Another project is not found, as over REST: the lookup is within the user's projects.
    project = accounts_selectors.project_get(project_id=project_id, projects=permissions.visible_project_ids(user))
    if project is None:
        return None, False, False, None
    return (
        project,
        permissions.can_view_project(user, project),
        permissions.can_view_per_node_metrics(user, project),
        permissions.visible_node_ids(user, project),
    )


class ProjectEventsConsumer(FollowConsumer):
    """Session and run status changes and finished rounds of one project."""

    message_type = "events"

    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        project_id = uuid_or_none(self.scope["url_route"]["kwargs"]["project_id"])
        project, allowed, per_node, visible = await _load_project(project_id, user) if project_id else (None,) * 4
        if project is None:
            return CLOSE_NOT_FOUND
        if not allowed:
            return CLOSE_FORBIDDEN
        cache = await feeds.acquire(feeds.EventFeed(project.pk))
        after = int_param(query, "after")
        node_ids = None if visible is None else {str(node) for node in visible}
        self.follows.append(
            Follow(
                name=f"events:{project.pk}",
                cache=cache,
                cursor=cache.head if after is None else after,
                transform=_event_filter(per_node=per_node, node_ids=node_ids),
            )
        )
        return None


def _event_filter(*, per_node: bool, node_ids: set[str] | None) -> feeds.Transform | None:
    """A participant sees its own node's sessions and only aggregated round metrics."""
    if per_node and node_ids is None:
        return None

    def transform(item: feeds.Item) -> feeds.Item | None:
        obj = item.obj or {}
        payload = obj.get("payload", {})
        if (
            node_ids is not None
            and obj.get("type", "").startswith("session.")
            and payload.get("node_id") not in node_ids
        ):
            return None
        if not per_node and obj.get("type") == "run.round" and payload.get("per_node"):
            obj = {**obj, "payload": {**payload, "per_node": {}}}
            return feeds.Item(item.seq, item.ts, feeds.encode(obj), obj)
        return item

    return transform
