"""Following a session's log, or a run's log with its SuperLink's and SuperNodes' lines."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async

from accounts import permissions
from orchestration import feeds, selectors
from orchestration.consumers.follow import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    RUN_WINDOW_SLACK,
    Follow,
    FollowConsumer,
    int_param,
    uuid_or_none,
)
from orchestration.models import FederatedRun, NodeSession
from orchestration.states import RUN_ENDED_STATUSES, SESSION_LIVE_STATUSES


@database_sync_to_async
def _load_session(session_id: Any, user: Any) -> NodeSession | None:
    """The session if it is in one of the user's projects: another project's is not found."""
    return selectors.session_get(session_id=session_id, projects=permissions.visible_project_ids(user))


def _session_status_sync(session_id: Any) -> tuple[bool, str]:
    status = selectors.session_status(session_id=session_id)
    return status is None or status not in SESSION_LIVE_STATUSES, str(status)


async def _session_status(session_id: Any) -> tuple[bool, str]:
    return await feeds.shared_status(("session", session_id), lambda: _session_status_sync(session_id))


class SessionLogConsumer(FollowConsumer):
    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        session_id = uuid_or_none(self.scope["url_route"]["kwargs"]["session_id"])
        session = await _load_session(session_id, user) if session_id else None
        if session is None:
            return CLOSE_NOT_FOUND
        if not await database_sync_to_async(permissions.can_view_session)(user, session):
            return CLOSE_FORBIDDEN
        after = int_param(query, "after") or 0
        cache = await feeds.acquire(feeds.LogFeed("session", session.pk))
        self.follows.append(
            Follow(
                name=f"session:{session.pk}",
                cache=cache,
                cursor=after,
                is_done=lambda: _session_status(session.pk),
            )
        )
        return None


@database_sync_to_async
def _run_context(run_id: Any, user: Any) -> tuple[FederatedRun | None, bool, list[NodeSession]]:
    """The run if it is in one of the user's projects (another project's is not found)."""
    run = selectors.run_get(run_id=run_id, projects=permissions.visible_project_ids(user))
    if run is None:
        return None, False, []
    if not permissions.can_view_run(user, run):
        return run, False, []
    return run, True, _run_sessions(run, user)


def _run_sessions(run: FederatedRun, user: Any) -> list[NodeSession]:
    """The SuperLink and SuperNodes alive during the run that this user may see."""
    sessions = selectors.sessions_during_run(run=run, slack=RUN_WINDOW_SLACK)
    return [s for s in sessions if permissions.can_view_session(user, s)]


def _run_status_sync(run_id: Any) -> tuple[bool, str, datetime | None]:
    row = selectors.run_status_and_end(run_id=run_id)
    if row is None:
        return True, "deleted", None
    status, ended_at = row
    return status in RUN_ENDED_STATUSES, status, ended_at


async def _run_status(run_id: Any) -> tuple[bool, str, datetime | None]:
    return await feeds.shared_status(("run", run_id), lambda: _run_status_sync(run_id))


class RunLogConsumer(FollowConsumer):
    """A run's `flwr run` log plus, tagged, the SuperLink's and SuperNodes' lines of its period."""

    async def setup(self, user: Any, query: dict[str, list[str]]) -> int | None:
        run_id = uuid_or_none(self.scope["url_route"]["kwargs"]["run_id"])
        run, allowed, sessions = await _run_context(run_id, user) if run_id else (None, False, [])
        if run is None:
            return CLOSE_NOT_FOUND
        if not allowed:
            return CLOSE_FORBIDDEN
        self.run = run
        self.user = user
        run_cache = await feeds.acquire(feeds.LogFeed("run", run.pk))
        self.follows.append(
            Follow(name=f"run:{run.pk}", cache=run_cache, cursor=int_param(query, "after") or 0, is_done=self._run_done)
        )
        for session in sessions:
            await self._add_session(session, query)
        return None

    async def _add_session(self, session: NodeSession, query: dict[str, list[str]]) -> Follow:
        feed = feeds.LogFeed("session", session.pk)
        cursor = int_param(query, f"after.{session.pk}")
        if cursor is None:
            start = (self.run.started_at or self.run.created_at) - RUN_WINDOW_SLACK
            cursor = await database_sync_to_async(feed.seq_before)(start)
        cache = await feeds.acquire(feed)
        follow = Follow(
            name=f"session:{session.pk}",
            cache=cache,
            cursor=cursor,
            is_done=lambda: self._session_done(session.pk),
            extra={"kind": session.kind},
        )
        self.follows.append(follow)
        return follow

    async def _run_done(self) -> tuple[bool, str]:
        done, status, ended_at = await _run_status(self.run.pk)
        if done and ended_at is not None:
            # The sessions' windows close a little after the run's end.
            for follow in self.follows[1:]:
                follow.until = ended_at + RUN_WINDOW_SLACK
        elif not done:
            await self._discover_sessions()
        return done, status

    async def _session_done(self, session_id: Any) -> tuple[bool, str]:
        done, status = await _session_status(session_id)
        run_done, _, ended_at = await _run_status(self.run.pk)
        if run_done and ended_at is not None and datetime.now(ended_at.tzinfo) > ended_at + RUN_WINDOW_SLACK:
            return True, status
        return done, status

    async def _discover_sessions(self) -> None:
        """SuperNodes that join mid-run are followed from when they start."""
        known = {f.name for f in self.follows}
        # The run was found in the user's projects at connect; a run never changes project.
        run = await database_sync_to_async(selectors.run_get)(
            run_id=self.run.pk, projects=frozenset({self.run.project_id})
        )
        if run is None:
            return
        self.run = run
        for session in await database_sync_to_async(_run_sessions)(run, self.user):
            if f"session:{session.pk}" not in known:
                follow = await self._add_session(session, {})
                self.tasks.append(asyncio.create_task(self.pump(follow)))
