"""The control rate limit (core.throttling, FEDML_RATE_CONTROL): per person, on every request that
changes something; over the limit a 429 naming it, with Retry-After, before the view touches the
database, and nothing changes. Reads are not limited; a database that cannot serve a request
answers a JSON 503 with Retry-After.

The counts live in the cache: each test has a local-memory cache of its own (conftest._own_cache).
Limits here are per day, so a test never straddles two windows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIRequestFactory

from accounts.models import AuditEvent, Node
from core.throttling import ControlRateThrottle, RateLimited
from orchestration.models import NodeSession
from tests.factories import (
    UserFactory,
    bearer_client,
    participant_node_of,
    person_of,
    project_coordinated_by,
)
from tests.outage_kit import unreachable_database
from tests.stack import ROOT

SUPERNODE_STOP = "/api/participant/supernode/stop"
SUPERNODE_START = "/api/participant/supernode/start"


@pytest.fixture
def member(db: None) -> Any:
    """A participant of a project of someone else's, with nothing running."""
    user = UserFactory(username="member")
    project, _ = project_coordinated_by(UserFactory(username="owner"))
    participant_node_of(user, project)
    return user


def _spend(client: Any, times: int) -> None:
    """`times` control requests that change nothing (no SuperNode runs: 409), each counted."""
    for _ in range(times):
        assert client.post(SUPERNODE_STOP, {}, format="json").status_code == 409


def test_the_request_over_the_limit_is_429_naming_it_with_retry_after_and_writes_nothing(
    settings: Any, member: Any
) -> None:
    settings.RATE_CONTROL = "2/day"
    client = bearer_client(member)
    _spend(client, 2)
    other_project, _ = project_coordinated_by(UserFactory(username="elsewhere"), name="Other")

    start = client.post(SUPERNODE_START, {"partition_id": 0, "num_partitions": 1}, format="json")
    join = client.post(f"/api/client/projects/{other_project.pk}/join", {}, format="json")

    for refused in (start, join):
        assert refused.status_code == 429, refused.content
        body = refused.json()
        assert body["field"] is None and body["limit"] == "2/day" and body["scope"] == "control"
        assert "2/day per person" in body["detail"]
        assert 1 <= int(refused["Retry-After"]) <= 86400 and body["retry_after"] == int(refused["Retry-After"])
    assert not NodeSession.objects.exists()
    assert not Node.objects.filter(project=other_project, role="participant").exists()


def test_a_refused_request_costs_no_database_work_beyond_authentication_but_its_audit_record(
    settings: Any, member: Any
) -> None:
    settings.RATE_CONTROL = "1/day"
    client = bearer_client(member)
    _spend(client, 1)

    with CaptureQueriesContext(connection) as queries:
        refused = client.post(SUPERNODE_START, {"partition_id": 0, "num_partitions": 1}, format="json")

    assert refused.status_code == 429
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    # Authentication (the token, its user, its last use) and the refusal's audit record, nothing
    # else: no node, project or session was read or written, and the count itself cost no query.
    tables = {table for sql in statements for table in re.findall(r'(?:FROM|INTO|UPDATE|JOIN) "(\w+)"', sql)}
    assert tables <= {"api_tokens", "auth_user", "audit_events"}, statements
    writes = [sql for sql in statements if not sql.startswith("SELECT")]
    assert all(sql.startswith(('UPDATE "api_tokens"', 'INSERT INTO "audit_events"')) for sql in writes), writes
    assert AuditEvent.objects.filter(action="supernode.start", detail__status="429").count() == 1


def test_each_person_has_a_limit_of_their_own(settings: Any, member: Any) -> None:
    settings.RATE_CONTROL = "2/day"
    _spend(bearer_client(member), 2)
    other = UserFactory(username="other")
    participant_node_of(other, Node.objects.get(user=person_of(member)).project)

    assert bearer_client(member).post(SUPERNODE_STOP, {}, format="json").status_code == 429
    assert bearer_client(other).post(SUPERNODE_STOP, {}, format="json").status_code == 409  # served


def test_reads_are_not_limited(settings: Any, member: Any) -> None:
    settings.RATE_CONTROL = "1/day"
    client = bearer_client(member)
    _spend(client, 1)
    assert client.post(SUPERNODE_STOP, {}, format="json").status_code == 429

    project = Node.objects.get(user=person_of(member)).project
    for path in (
        "/api/participant/health",
        "/api/participant/supernodes",
        "/api/coordinator/health",
        "/api/coordinator/runs/active",
        "/api/client/projects",
        f"/api/client/dashboard?projectId={project.pk}",
        "/api/admin/projects",  # GET of a view whose POST is limited
    ):
        assert client.get(path).status_code == 200, path


def test_off_turns_the_limit_off(settings: Any, member: Any) -> None:
    settings.RATE_CONTROL = "2/day"
    client = bearer_client(member)
    _spend(client, 2)
    assert client.post(SUPERNODE_STOP, {}, format="json").status_code == 429

    settings.RATE_CONTROL = None  # FEDML_RATE_CONTROL=off
    _spend(client, 40)


def test_anonymous_callers_are_counted_per_client_address(settings: Any) -> None:
    settings.RATE_CONTROL = "1/day"
    throttle, factory = ControlRateThrottle(), APIRequestFactory()

    def allowed(address: str) -> bool:
        request = factory.post("/api/anything", REMOTE_ADDR=address)
        request.user = AnonymousUser()
        try:
            return throttle.allow_request(request, view=None)
        except RateLimited as refused:
            assert refused.per == "client address"
            return False

    assert allowed("10.0.0.1") and allowed("10.0.0.2")
    assert not allowed("10.0.0.1")


# Views with unsafe methods that are deliberately not limited: they touch no database.
UNLIMITED = {"SignupApi", "NotFoundApi"}


def _views(patterns: list[Any]) -> Iterator[type]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
            yield pattern.callback.cls


def test_every_api_view_that_changes_something_is_limited() -> None:
    unsafe = {
        view
        for view in _views(get_resolver().url_patterns)
        if any(hasattr(view, method) for method in ("post", "put", "patch", "delete"))
    }
    limited = {view.__name__ for view in unsafe if ControlRateThrottle in view.throttle_classes}
    assert {view.__name__ for view in unsafe} - limited == UNLIMITED
    assert {"SupernodeStartApi", "SuperlinkStartApi", "RunStartApi", "NodeEnrollApi", "ClientJoinApi"} <= limited


# ----------------------------------------------------------------- a database that cannot serve
@pytest.mark.django_db(transaction=True)
def test_a_database_that_cannot_serve_answers_json_503_with_retry_after(member: Any) -> None:
    client = bearer_client(member)

    # The token is looked up first: that fails, and so does the audit record of the failure after it.
    with unreachable_database():
        answers = [
            client.post(SUPERNODE_START, {"partition_id": 0, "num_partitions": 1}, format="json"),
            client.get("/api/participant/health"),
            client.get("/health"),
        ]

    for answer in answers:
        assert answer.status_code == 503, answer.content
        assert answer["Content-Type"] == "application/json" and answer["Retry-After"] == "5"
        body = answer.json()
        assert body["field"] is None and "database" in body["detail"], body


# ----------------------------------------------------------------- settings
OURS = ("FEDML_RATE_", "FEDML_DB_POOL_")


def _settings(**env: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "db = s.DATABASES['default']; "
        "print(json.dumps([s.RATE_CONTROL, db.get('CONN_MAX_AGE'), db.get('OPTIONS', {}).get('pool')]))"
    )
    ours = {"DATABASE_URL", "REDIS_URL", "DATABASE_CONN_MAX_AGE", *(k for k in os.environ if k.startswith(OURS))}
    base = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**base, "DJANGO_SETTINGS_MODULE": "fedml_site.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "30/min"),
        ({"FEDML_RATE_CONTROL": " 100/Hour "}, "100/hour"),
        ({"FEDML_RATE_CONTROL": "5/s"}, "5/s"),
        ({"FEDML_RATE_CONTROL": "off"}, None),
    ],
)
def test_the_rate_setting_parses(env: dict[str, str], expected: str | None) -> None:
    result = _settings(**env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0] == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FEDML_RATE_CONTROL", "lots"),
        ("FEDML_RATE_CONTROL", "0/min"),
        ("FEDML_RATE_CONTROL", "30/fortnight"),
        ("FEDML_RATE_CONTROL", "30"),
        ("FEDML_RATE_CONTROL", "３０/min"),
        ("FEDML_RATE_CONTROL", ""),
        ("FEDML_DB_POOL_MAX", "many"),
        ("FEDML_DB_POOL_MAX", "-1"),
        ("FEDML_DB_POOL_TIMEOUT", "never"),
    ],
)
def test_a_bad_value_stops_startup_naming_the_variable(variable: str, value: str) -> None:
    result = _settings(**{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr.splitlines()[-1]


POSTGRES = "postgres://postgres@127.0.0.1:5432/fedml"


def test_postgresql_borrows_from_a_bounded_pool_sized_from_settings() -> None:
    result = _settings(DATABASE_URL=POSTGRES, FEDML_DB_POOL_MAX="7", FEDML_DB_POOL_TIMEOUT="2.5")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[1:] == [0, {"min_size": 2, "max_size": 7, "timeout": 2.5}]

    default = _settings(DATABASE_URL=POSTGRES)
    assert json.loads(default.stdout)[1:] == [0, {"min_size": 2, "max_size": 20, "timeout": 10.0}]


def test_without_the_pool_postgresql_connections_close_after_each_request_unless_configured() -> None:
    assert json.loads(_settings(DATABASE_URL=POSTGRES, FEDML_DB_POOL_MAX="0").stdout)[1:] == [0, None]
    kept = _settings(DATABASE_URL=POSTGRES, FEDML_DB_POOL_MAX="0", DATABASE_CONN_MAX_AGE="60")
    assert json.loads(kept.stdout)[1:] == [60, None]
    # Persistent connections and the pool exclude each other (Django refuses it at the first query).
    refused = _settings(DATABASE_URL=POSTGRES, DATABASE_CONN_MAX_AGE="60")
    assert refused.returncode != 0 and "DATABASE_CONN_MAX_AGE" in refused.stderr.splitlines()[-1]
