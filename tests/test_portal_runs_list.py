"""`GET /api/admin/projects/<id>/runs`: filters, search, limits and keyset pages that stay stable while runs are added."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.models import FederatedRun, RunStatus
from tests.factories import FederatedRunFactory, bearer_client, project_coordinated_by
from tests.portal_shapes import check_error, check_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> Any:
    return get_user_model().objects.create_user(username="owner", password="pw-123456-xyz")


@pytest.fixture
def project(owner: Any) -> Any:
    return project_coordinated_by(owner)[0]


@pytest.fixture
def client(owner: Any) -> Any:
    return bearer_client(owner)


def url(project: Any, query: str = "") -> str:
    return f"/api/admin/projects/{project.pk}/runs" + (f"?{query}" if query else "")


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [run["id"] for run in response.json()["runs"]]


def make_runs(project: Any, n: int, *, same_instant: bool = False, **kwargs: Any) -> list[FederatedRun]:
    """n ended runs, created one second apart (or all at the same instant); newest first."""
    base = timezone.now() - timedelta(days=1)
    kwargs.setdefault("status", "completed")
    runs = []
    for i in range(n):
        run = FederatedRunFactory(project=project, **kwargs)
        FederatedRun.objects.filter(pk=run.pk).update(created_at=base if same_instant else base + timedelta(seconds=i))
        runs.append(run)
    return sorted(runs, key=lambda r: (FederatedRun.objects.get(pk=r.pk).created_at, str(r.pk)), reverse=True)


def walk(client: Any, project: Any, query: str, between_pages: Any = None) -> list[str]:
    """Every page, following nextCursor; `between_pages()` runs after each page."""
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        q = query + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url(project, q))
        body = response.json()
        assert set(body) == {"runs", "nextCursor"}
        seen += ids(response)
        cursor = body["nextCursor"]
        if cursor is None:
            return seen
        assert isinstance(cursor, str)
        if between_pages:
            between_pages()
    raise AssertionError("no last page")


def test_default_page_is_25_newest_created_first_with_a_cursor(client: Any, project: Any) -> None:
    runs = make_runs(project, 30)
    body = client.get(url(project)).json()
    assert [r["id"] for r in body["runs"]] == [str(r.pk) for r in runs[:25]]
    for run in body["runs"]:
        check_run(run)
    assert isinstance(body["nextCursor"], str)
    last = client.get(url(project, f"cursor={body['nextCursor']}")).json()
    assert [r["id"] for r in last["runs"]] == [str(r.pk) for r in runs[25:]]
    assert last["nextCursor"] is None


def test_pages_cover_every_run_once_even_when_created_at_ties(client: Any, project: Any) -> None:
    runs = make_runs(project, 7, same_instant=True) + make_runs(project, 4)
    expected = sorted(
        (str(r.pk) for r in runs), key=lambda pk: (FederatedRun.objects.get(pk=pk).created_at, pk), reverse=True
    )
    for limit in (1, 2, 3, 5, 11, 200):
        assert walk(client, project, f"limit={limit}") == expected, limit


def test_pages_stay_stable_when_runs_are_added_between_them(client: Any, project: Any) -> None:
    runs = make_runs(project, 9)
    added: list[FederatedRun] = []

    def another_run() -> None:
        added.append(FederatedRunFactory(project=project, status="completed"))

    seen = walk(client, project, "limit=2", between_pages=another_run)
    assert seen == [str(r.pk) for r in runs]  # nothing repeated or skipped; the new runs sort before the first page
    assert added and not set(seen) & {str(r.pk) for r in added}
    assert ids(client.get(url(project, "limit=2")))[0] == str(added[-1].pk)


def test_status_filter_takes_one_or_more_statuses(client: Any, project: Any) -> None:
    failed = make_runs(project, 2, status="failed")
    stopped = make_runs(project, 1, status="stopped")
    make_runs(project, 3, status="completed")
    live = FederatedRunFactory(project=project, status="running")
    assert set(ids(client.get(url(project, "status=failed")))) == {str(r.pk) for r in failed}
    both = {str(r.pk) for r in failed + stopped}
    assert set(ids(client.get(url(project, "status=failed&status=stopped")))) == both
    assert set(ids(client.get(url(project, "status=failed,stopped")))) == both
    assert ids(client.get(url(project, "status=running"))) == [str(live.pk)]
    assert ids(client.get(url(project, "status=requested"))) == []
    assert walk(client, project, "status=failed,stopped,running&limit=1") == ids(
        client.get(url(project, "status=failed,stopped,running"))
    )


def test_search_matches_label_federation_flower_run_id_and_run_id_prefix(client: Any, project: Any) -> None:
    a = FederatedRunFactory(project=project, status="completed", label="Baseline ResNet", federation_name="production")
    b = FederatedRunFactory(project=project, status="completed", label=None, federation_name="Staging-EU")
    c = FederatedRunFactory(project=project, status="completed", flower_run_id="18446744073709551615")
    other_project = project_coordinated_by(get_user_model().objects.create_user(username="x"))[0]
    FederatedRunFactory(project=other_project, status="completed", label="baseline elsewhere")

    def search(text: str) -> set[str]:
        return set(ids(client.get(url(project, f"search={text}"))))

    assert search("resnet") == {str(a.pk)}
    assert search("staging") == {str(b.pk)}
    assert search("744073709") == {str(c.pk)}
    hyphenated = str(c.pk)
    assert str(c.pk) in search(hyphenated[:8])
    assert search(hyphenated[:13]) == {str(c.pk)}  # with its hyphen
    assert search(hyphenated.replace("-", "")[:16].upper()) == {str(c.pk)}  # without, in capitals
    assert search(hyphenated) == {str(c.pk)}
    assert search("nothing-like-this") == set()
    assert search("%") == set()  # LIKE wildcards are text here
    assert search("_") == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=finished", "status"),
        ("status=failed,nope", "status"),
        ("status=RUNNING", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("cursor=nope", "cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'["yesterday","x"]').decode(), "cursor"),
        (
            "cursor="
            + base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00", str(uuid.uuid4())]).encode()).decode(),
            "cursor",
        ),
        ("cursor=" + base64.urlsafe_b64encode(b'{"a":1,"b":2}').decode(), "cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b"[1,2]").decode(), "cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b"\xff\xfe").decode(), "cursor"),
        ("cursor=" + "A" * 300, "cursor"),
        ("search=" + "x" * 201, "search"),
        ("search=a%00b", "search"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(client: Any, project: Any, query: str, field: str) -> None:
    make_runs(project, 2)
    check_error(client.get(url(project, query)), 400, field)


def test_every_run_status_is_accepted(client: Any, project: Any) -> None:
    for status in RunStatus.values:
        assert client.get(url(project, f"status={status}")).status_code == 200, status


def test_limits_at_the_edges(client: Any, project: Any) -> None:
    make_runs(project, 3)
    assert len(ids(client.get(url(project, "limit=1")))) == 1
    assert len(ids(client.get(url(project, "limit=200")))) == 3
    assert client.get(url(project, "limit=3")).json()["nextCursor"] is None


def test_queries_do_not_grow_with_runs(client: Any, project: Any) -> None:
    def count(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url(project, query)).status_code == 200
        return len(captured.captured_queries)

    make_runs(project, 1)
    before = (count(""), count("status=completed&search=e&limit=200"))
    make_runs(project, 20)
    assert (count(""), count("status=completed&search=e&limit=200")) == before
