"""GET /api/coordinator/{sessions,runs}/<id>/logs: the record itself, paged by sequence number."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestration.models import LogLine
from tests.factories import FederatedRunFactory, NodeSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def session_with_lines():
    session = NodeSessionFactory(status="running")
    LogLine.objects.bulk_create(
        LogLine(session=session, seq=n, stream="stdout", source="supernode", ts=datetime.now(UTC), text=f"line {n}")
        for n in range(1, 31)
    )
    return session


def _seqs(api_client, url: str) -> list[int]:
    response = api_client.get(url)
    assert response.status_code == 200, response.content
    return [line["seq"] for line in response.json()["lines"]]


def test_session_log_pages_forward_after_a_seq_and_backward_before_one(api_client, session_with_lines):
    url = f"/api/coordinator/sessions/{session_with_lines.pk}/logs"

    assert _seqs(api_client, url) == list(range(1, 31))
    assert _seqs(api_client, f"{url}?after=25") == [26, 27, 28, 29, 30]
    assert _seqs(api_client, f"{url}?after=10&limit=3") == [11, 12, 13]
    assert _seqs(api_client, f"{url}?before=11&limit=4") == [7, 8, 9, 10]
    assert _seqs(api_client, f"{url}?after=999999999999999999") == []


def test_run_log_reads_the_runs_own_lines(api_client):
    run = FederatedRunFactory(status="running")
    LogLine.objects.create(run=run, seq=1, stream="stdout", source="run", ts=datetime.now(UTC), text="hello")

    response = api_client.get(f"/api/coordinator/runs/{run.pk}/logs")

    assert response.status_code == 200
    assert response.json()["lines"][0]["text"] == "hello"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("after=%EF%BC%91%EF%BC%92", "after"),  # fullwidth "１２", which Python's int() would take
        ("after=1_000", "after"),
        ("after=9999999999999999999", "after"),  # no bigint holds it
        ("before=", "before"),
        ("before=x", "before"),
        ("limit=0", "limit"),
        ("limit=%00", "limit"),
    ],
)
def test_log_refuses_a_bad_cursor_or_limit_naming_it(api_client, session_with_lines, query, field):
    response = api_client.get(f"/api/coordinator/sessions/{session_with_lines.pk}/logs?{query}")

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_log_of_an_unknown_session_is_404(api_client):
    response = api_client.get("/api/coordinator/sessions/00000000-0000-0000-0000-000000000000/logs")

    assert response.status_code == 404
