"""Supabase row-level security on the real PostgreSQL: db/schema.sql applied to a scratch
database, rows written as the owner, then read as Supabase's roles with `request.jwt.claims`
set the way Supabase's REST layer sets them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.stack import ROOT

ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
TABLES = [
    "projects",
    "nodes",
    "node_sessions",
    "federated_runs",
    "log_lines",
    "round_metrics",
    "project_events",
    "node_enrollments",
    "supervisor_heartbeats",
]


@pytest.fixture
def db() -> Iterator[str]:
    name = f"fedml_rls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((ROOT / "db" / "schema.sql").read_text())
        yield url
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(url: str) -> dict[str, str]:
    """Project P with a coordinator node, sites A and B, each with a session and lines; project Q too."""
    ids: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for project in ("p", "q"):
            ids[project] = str(
                conn.execute(
                    "INSERT INTO projects (slug, name) VALUES (%s, %s) RETURNING id", [project, project]
                ).fetchone()[0]
            )
        for node, project, role in (
            ("coord", "p", "coordinator"),
            ("a", "p", "participant"),
            ("b", "p", "participant"),
            ("qa", "q", "participant"),
        ):
            ids[node] = str(
                conn.execute(
                    "INSERT INTO nodes (project_id, external_id, role) VALUES (%s, %s, %s) RETURNING id",
                    [ids[project], node, role],
                ).fetchone()[0]
            )
            ids[f"s_{node}"] = str(
                conn.execute(
                    "INSERT INTO node_sessions (node_id, kind, status) VALUES (%s, 'supernode', 'running') RETURNING id",
                    [ids[node]],
                ).fetchone()[0]
            )
            conn.execute(
                "INSERT INTO log_lines (session_id, seq, stream, ts, text) VALUES (%s, 1, 'stdout', now(), %s)",
                [ids[f"s_{node}"], f"line of {node}"],
            )
            conn.execute("INSERT INTO node_enrollments (node_id, public_key) VALUES (%s, 'k')", [ids[node]])
        ids["run"] = str(
            conn.execute("INSERT INTO federated_runs (project_id) VALUES (%s) RETURNING id", [ids["p"]]).fetchone()[0]
        )
        conn.execute(
            "INSERT INTO log_lines (run_id, seq, stream, ts, text) VALUES (%s, 1, 'stdout', now(), 'run line')",
            [ids["run"]],
        )
        conn.execute(
            "INSERT INTO round_metrics (run_id, round, phase, aggregated, per_node) VALUES (%s, 1, 'evaluate', '{}', '{\"1\": {}}')",
            [ids["run"]],
        )
        for seq, (type_, node) in enumerate(
            (("session.status", "a"), ("session.status", "b"), ("run.status", None)), 1
        ):
            payload = json.dumps({"node_id": ids[node]} if node else {"run_id": ids["run"]})
            conn.execute(
                "INSERT INTO project_events (project_id, seq, type, payload) VALUES (%s, %s, %s, %s)",
                [ids["p"], seq, type_, payload],
            )
        conn.execute(
            "INSERT INTO supervisor_heartbeats (hostname, pid, started_at, beat_at) VALUES ('h', 1, now(), now())"
        )
    return ids


def _counts(url: str, role: str, claims: dict | None) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        conn.execute(f"SET ROLE {role}")
        if claims is not None:
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def _claims(ids: dict[str, str], role: str, node: str | None = None) -> dict:
    meta = {"fedml_project_id": ids["p"], "fedml_role": role}
    if node:
        meta["fedml_node_id"] = ids[node]
    return {"sub": "u", "role": "authenticated", "app_metadata": meta}


def test_participant_claims_read_only_their_nodes_rows_and_their_projects_runs(db: str) -> None:
    ids = _seed(db)
    counts = _counts(db, "authenticated", _claims(ids, "participant", "a"))
    assert counts["projects"] == 1 and counts["nodes"] == 3 and counts["federated_runs"] == 1
    assert counts["node_sessions"] == 1  # its own node's session only
    assert counts["log_lines"] == 2  # its session's line and the run's line, not site B's
    assert counts["round_metrics"] == 0  # per-node metrics are the coordinator's
    assert counts["project_events"] == 2  # its own session event and the run's, not site B's
    assert counts["node_enrollments"] == 1 and counts["supervisor_heartbeats"] == 0
    with psycopg.connect(db) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(_claims(ids, "participant", "a"))]
        )
        texts = sorted(row[0] for row in conn.execute("SELECT text FROM log_lines"))
    assert texts == ["line of a", "run line"]


def test_coordinator_claims_read_the_whole_project_and_nothing_of_another(db: str) -> None:
    ids = _seed(db)
    counts = _counts(db, "authenticated", _claims(ids, "coordinator"))
    assert counts == {
        "projects": 1,
        "nodes": 3,
        "node_sessions": 3,
        "federated_runs": 1,
        "log_lines": 4,
        "round_metrics": 1,
        "project_events": 3,
        "node_enrollments": 3,
        "supervisor_heartbeats": 1,
    }


def test_anon_and_claimless_reads_nothing_and_service_role_reads_everything(db: str) -> None:
    _seed(db)
    assert set(_counts(db, "anon", None).values()) == {0}
    assert set(_counts(db, "authenticated", None).values()) == {0}
    everything = _counts(db, "service_role", None)
    assert everything["node_sessions"] == 4 and everything["log_lines"] == 5 and everything["projects"] == 2


def test_participant_cannot_write_through_the_rest_roles(db: str) -> None:
    ids = _seed(db)
    with psycopg.connect(db) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(_claims(ids, "participant", "a"))]
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE node_sessions SET status = 'stopped'")
