"""Query counts on the hot paths: the same few queries however many lines, rounds or rows.

Each test measures a request (or a feed read) with a little data and again with much more,
and asserts the count is the same and within the bound recorded when these tests were written.
Requests authenticate as real clients do, with an API token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import services as accounts_services
from accounts.services import api_token_create, membership_set
from orchestration import feeds
from orchestration.models import FederatedRun, LogLine, NodeSession, RoundMetric
from tests.factories import FederatedRunFactory, NodeSessionFactory, SupervisorHeartbeatFactory

pytestmark = pytest.mark.django_db

# Today's counts (the same on SQLite and PostgreSQL). A participant's permission checks read its
# membership; every authenticated request also reads its API token and records its use (an UPDATE).
# A change that adds a query to one of these paths has to raise its bound on purpose.
BOUNDS = {
    "session_logs": {"staff": 4, "participant": 5},
    "run_logs": {"staff": 4, "participant": 5},
    "run_detail": {"staff": 5, "participant": 7},
    "runs_active": {"staff": 5, "participant": 7},  # a participant names no project: its own is looked up
    "coordinator_health": {"staff": 9, "participant": 10},
    "participant_health": {"staff": 8, "participant": 9},
    "health": {"anonymous": 1},
}


@dataclass
class Api:
    client: APIClient
    identity: str

    def bound(self, path: str) -> int:
        return BOUNDS[path][self.identity]


def _client(*, staff: bool) -> tuple[APIClient, Any]:
    user = get_user_model().objects.create_user(username="staff" if staff else "site", password="pw", is_staff=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t', actor='t', via='t')[1]}")
    return client, user


@pytest.fixture(params=["staff", "participant"])
def api(request: pytest.FixtureRequest) -> Api:
    """A staff client, or a participant bound to the site's node."""
    if request.param == "staff":
        return Api(_client(staff=True)[0], "staff")
    client, user = _client(staff=False)
    node = accounts_services.participant_node_ensure()
    membership_set(user=user, project=node.project, role="participant", node=node, actor="t", via="t")
    return Api(client, "participant")


def queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def same_count_however_much(client: APIClient, url: str, grow: Callable[[], None], bound: int, assert_max: Any) -> None:
    client.get(url)  # first use creates the configured project and nodes
    before = queries(client, url)
    grow()
    with assert_max(bound):
        after = queries(client, url)
    assert after == before, f"{url}: {before} queries before, {after} after"


def add_lines(*, session: NodeSession | None = None, run: FederatedRun | None = None, first: int, count: int) -> None:
    now = datetime.now(UTC)
    LogLine.objects.bulk_create(
        LogLine(session=session, run=run, seq=seq, stream="stdout", source="t", ts=now, text=f"line {seq}")
        for seq in range(first, first + count)
    )


def add_rounds(run: FederatedRun, first: int, count: int) -> None:
    RoundMetric.objects.bulk_create(
        RoundMetric(run=run, round=n, phase=phase, aggregated={"accuracy": 0.9}, per_node={"a": {"accuracy": 0.9}})
        for n in range(first, first + count)
        for phase in ("train", "evaluate")
    )


def add_history(project: Any) -> None:
    """Ended runs and sessions and old heartbeats: what a long-lived deployment accumulates."""
    ended = datetime.now(UTC) - timedelta(days=1)
    for _ in range(30):
        FederatedRunFactory(project=project, status="completed", ended_at=ended)
        NodeSessionFactory(node=accounts_services.participant_node_ensure(), status="stopped", ended_at=ended)
        SupervisorHeartbeatFactory(beat_at=ended)


# ---------------------------------------------------------------- log lines (REST)
@pytest.mark.parametrize("page", ["after=0", "before=5000&limit=2000"])  # forward, and older lines on scroll
def test_session_log_page_costs_the_same_for_10_or_1000_lines(
    api: Api, page: str, django_assert_max_num_queries: Any
) -> None:
    session = NodeSessionFactory(node=accounts_services.participant_node_ensure(), status="running")
    add_lines(session=session, first=1, count=10)

    same_count_however_much(
        api.client,
        f"/api/coordinator/sessions/{session.pk}/logs?{page}",
        lambda: add_lines(session=session, first=11, count=990),
        api.bound("session_logs"),
        django_assert_max_num_queries,
    )


def test_run_log_page_costs_the_same_for_10_or_1000_lines(api: Api, django_assert_max_num_queries: Any) -> None:
    run = FederatedRunFactory(project=accounts_services.participant_node_ensure().project, status="running")
    add_lines(run=run, first=1, count=10)

    same_count_however_much(
        api.client,
        f"/api/coordinator/runs/{run.pk}/logs?after=5",
        lambda: add_lines(run=run, first=11, count=990),
        api.bound("run_logs"),
        django_assert_max_num_queries,
    )


# ---------------------------------------------------------------- runs
def test_run_detail_costs_the_same_for_1_or_100_rounds(api: Api, django_assert_max_num_queries: Any) -> None:
    run = FederatedRunFactory(project=accounts_services.participant_node_ensure().project, status="completed")
    add_rounds(run, 1, 1)

    same_count_however_much(
        api.client,
        f"/api/coordinator/runs/{run.pk}",
        lambda: add_rounds(run, 2, 99),
        api.bound("run_detail"),
        django_assert_max_num_queries,
    )
    assert len(api.client.get(f"/api/coordinator/runs/{run.pk}").json()["rounds"]) == 200


def test_active_run_costs_the_same_however_many_rounds_and_past_runs(
    api: Api, django_assert_max_num_queries: Any
) -> None:
    project = accounts_services.coordinator_node_ensure().project
    run = FederatedRunFactory(project=project, status="running")
    add_rounds(run, 1, 1)

    def grow() -> None:
        add_rounds(run, 2, 99)
        add_history(project)

    same_count_however_much(
        api.client, "/api/coordinator/runs/active", grow, api.bound("runs_active"), django_assert_max_num_queries
    )
    assert api.client.get("/api/coordinator/runs/active").json()["run"]["run_id"] == str(run.pk)


# ---------------------------------------------------------------- health
def test_coordinator_health_costs_the_same_however_much_history(api: Api, django_assert_max_num_queries: Any) -> None:
    project = accounts_services.coordinator_node_ensure().project
    SupervisorHeartbeatFactory()
    NodeSessionFactory(node=accounts_services.coordinator_node_ensure(), kind="superlink", status="running")
    FederatedRunFactory(project=project, status="running")

    same_count_however_much(
        api.client,
        "/api/coordinator/health",
        lambda: add_history(project),
        api.bound("coordinator_health"),
        django_assert_max_num_queries,
    )


def test_participant_health_costs_the_same_however_much_history(api: Api, django_assert_max_num_queries: Any) -> None:
    node = accounts_services.participant_node_ensure()
    SupervisorHeartbeatFactory()
    NodeSessionFactory(node=node, status="running")

    same_count_however_much(
        api.client,
        "/api/participant/health",
        lambda: add_history(node.project),
        api.bound("participant_health"),
        django_assert_max_num_queries,
    )


def test_anonymous_health_costs_the_same_however_many_supervisors(django_assert_max_num_queries: Any) -> None:
    SupervisorHeartbeatFactory()

    def grow() -> None:
        for _ in range(20):
            SupervisorHeartbeatFactory()  # alive
            SupervisorHeartbeatFactory(beat_at=datetime.now(UTC) - timedelta(days=1))

    same_count_however_much(APIClient(), "/health", grow, BOUNDS["health"]["anonymous"], django_assert_max_num_queries)


# ---------------------------------------------------------------- the websocket feeds' reads
@pytest.mark.parametrize("kind", ["session", "run"])
def test_a_log_feed_reads_10_or_1000_new_lines_in_one_query(kind: str) -> None:
    owner = NodeSessionFactory(status="running") if kind == "session" else FederatedRunFactory(status="running")
    feed = feeds.LogFeed(kind, owner.pk)
    owned = {kind: owner}
    add_lines(**owned, first=1, count=10)

    for after, count in ((0, 10), (10, 1_000)):
        if after:
            add_lines(**owned, first=11, count=count)
        with CaptureQueriesContext(connection) as captured:
            items = feed.fetch(after, feeds.FETCH_LIMIT)
        assert [item.seq for item in items] == list(range(after + 1, after + count + 1))
        assert len(captured.captured_queries) == 1
    with CaptureQueriesContext(connection) as captured:
        assert feed.head() == 1_010
    assert len(captured.captured_queries) == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("count", [10, 1_000])
async def test_a_tail_refresh_reads_new_lines_in_one_query_however_many(count: int) -> None:
    from channels.db import database_sync_to_async as sync_to_async

    session = await sync_to_async(NodeSessionFactory)(status="running")
    tail = feeds.FeedCache(feeds.LogFeed("session", session.pk))
    await tail.start()
    await sync_to_async(add_lines)(session=session, first=1, count=count)
    queries_before = tail.queries

    await tail.refresh(force=True)

    assert tail.head == count
    assert tail.queries == queries_before + 1
