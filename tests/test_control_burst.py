"""A burst of concurrent control requests from one member against the real thing (Daphne, the
supervisor, real flower-supernode processes; PostgreSQL and Redis on that leg): no 5xx at all,
every answer a normal one or a 429 naming the limit, and the API keeps answering another member.

Before the rate limit and the connection pool, each request in flight held a PostgreSQL
connection of its own (and, with persistent connections under ASGI, kept it after its thread was
gone): a burst of 50 SuperNode starts answered 45 x 500 "too many clients already"."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from accounts.services import api_token_create
from accounts.services.projects import project_ensure_default
from orchestration.models import NodeSession
from tests.factories import UserFactory, participant_node_of
from tests.stack import running_stack

pytestmark = [pytest.mark.federation, pytest.mark.fault, pytest.mark.django_db(transaction=True)]

BURST = 200
LIMIT = 10  # per day: a burst never straddles two windows; each allowed start is a real SuperNode


def _member(name: str) -> tuple[Any, dict[str, str]]:
    # A user id no earlier run used: on the PostgreSQL leg Daphne counts in Redis, which outlives the
    # test database (whose ids start again at 1), and the count is per user id.
    user = UserFactory(username=name, id=uuid.uuid4().int % 2**31)
    participant_node_of(user, project_ensure_default())
    secret = api_token_create(user=user, name="burst", actor="test", via="test")[1]
    return user, {"Authorization": f"Bearer {secret}"}


class ConnectionWatch:
    """The most connections PostgreSQL held to the test database while it ran (None on SQLite)."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ConnectionWatch:
        if connection.vendor == "postgresql":
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            watcher = psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)
            self.peak = 0
            self._thread = threading.Thread(target=self._watch, args=(watcher,), daemon=True)
            self._thread.start()
        return self

    def _watch(self, watcher: Any) -> None:
        with watcher:
            while not self._stop.wait(0.02):  # a sampling period, not a wait for anything
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchone()
                self.peak = max(self.peak or 0, row[0] - 1)  # not counting this watcher

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def test_a_burst_of_supernode_starts_from_one_member_gets_no_5xx_and_others_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="httpx")  # not a line per request
    member, member_auth = _member("burster")
    _, other_auth = _member("bystander")

    with running_stack(tmp_path, {"FEDML_RATE_CONTROL": f"{LIMIT}/day"}) as stack:
        limits = httpx.Limits(max_connections=BURST + 10, max_keepalive_connections=0)
        with httpx.Client(base_url=stack.base_url, limits=limits, timeout=120) as http:
            ready = threading.Barrier(BURST + 1)

            def start(_: int) -> httpx.Response:
                ready.wait()
                return http.post(
                    "/api/participant/supernode/start",
                    json={"partition_id": 0, "num_partitions": 1},
                    headers=member_auth,
                )

            with ConnectionWatch() as watch, ThreadPoolExecutor(BURST) as pool:
                began = time.monotonic()
                answers = [pool.submit(start, n) for n in range(BURST)]
                ready.wait()
                # Meanwhile another member reads and controls: served, not limited by the burst.
                others = [
                    http.get("/api/participant/health", headers=other_auth),
                    http.get("/health"),
                    http.post("/api/participant/supernode/stop", json={}, headers=other_auth),
                ]
                others_took = time.monotonic() - began
                still_open = sum(1 for answer in answers if not answer.done())
                responses = [answer.result() for answer in answers]
                took = time.monotonic() - began

    counts = Counter(r.status_code for r in responses)
    print(
        f"\n{BURST} concurrent SuperNode starts from one member, limit {LIMIT}/day: "
        f"statuses {dict(sorted(counts.items()))}, {took:.1f} s, "
        f"peak PostgreSQL connections {watch.peak if watch.peak is not None else 'n/a (SQLite)'}; "
        f"the other member was answered {[r.status_code for r in others]} after {others_took:.1f} s, "
        f"with {still_open} of the burst still open"
    )
    assert not [r for r in responses if r.status_code >= 500], [r.text for r in responses if r.status_code >= 500]
    assert set(counts) <= {201, 409, 429}, counts
    assert 1 <= counts[201] <= LIMIT and counts[429] >= BURST - LIMIT, counts
    for refused in (r for r in responses if r.status_code == 429):
        body = refused.json()
        assert body["limit"] == f"{LIMIT}/day" and body["field"] is None
        assert int(refused.headers["Retry-After"]) >= 1
    assert [r.status_code for r in others] == [200, 200, 409], [r.text for r in others]
    # Only the allowed starts wrote a session: the refused ones changed nothing.
    assert NodeSession.objects.filter(node__user__django_user=member).count() == counts[201]
