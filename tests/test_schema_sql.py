"""db/schema.sql must build exactly the schema the migrations build.

These tests always use the real PostgreSQL at 127.0.0.1:5432 (override with
FEDML_TEST_PG_ADMIN_URL), whatever database the rest of the suite runs on: they make
their own scratch databases with psycopg and never touch Django's test database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from psycopg import sql

from orchestration.management.commands import generate_schema
from orchestration.management.commands.generate_schema import database_url, fedml_tables

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_SQL = ROOT / "db" / "schema.sql"
ADMIN_URL = os.environ.get("FEDML_TEST_PG_ADMIN_URL", generate_schema.DEFAULT_ADMIN_URL)
TABLES = fedml_tables()

ScratchDb = Callable[[], str]


def _scratch_factory() -> Iterator[ScratchDb]:
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"schema.sql tests need PostgreSQL at {ADMIN_URL}: {exc}")
    names: list[str] = []

    def create() -> str:
        name = f"fedml_test_schema_{uuid.uuid4().hex[:12]}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        names.append(name)
        return database_url(ADMIN_URL, name)

    try:
        yield create
    finally:
        with admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def module_scratch_db() -> Iterator[ScratchDb]:
    """Makes empty scratch databases shared by the module's tests; drops them at the end."""
    yield from _scratch_factory()


@pytest.fixture
def scratch_db() -> Iterator[ScratchDb]:
    """Makes empty scratch databases for one test; drops them afterwards."""
    yield from _scratch_factory()


def apply_with_cursor(url: str) -> None:
    """The whole file in one cursor.execute(), as a Python deploy script would apply it."""
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA_SQL.read_text())


def apply_with_psql(url: str) -> None:
    subprocess.run(  # noqa: S603
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(SCHEMA_SQL), url],
        check=True,
        capture_output=True,
        text=True,
    )


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


def query_ddl(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def migrated_db(module_scratch_db: ScratchDb) -> str:
    url = module_scratch_db()
    subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return url


@pytest.fixture(scope="module")
def schema_sql_db(module_scratch_db: ScratchDb) -> str:
    url = module_scratch_db()
    apply_with_cursor(url)
    return url


def tables_of(url: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        """
        SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relreplident
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY(%s) ORDER BY c.relname
        """,
        (TABLES,),
    )


def columns_of(url: str) -> list[tuple[Any, ...]]:
    # Ordered by position; identity columns also compare their sequence's parameters.
    return query(
        url,
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               pg_get_serial_sequence(format('public.%%I', c.relname), a.attname) AS seq,
               s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_sequence s
               ON s.seqrelid = pg_get_serial_sequence(format('public.%%I', c.relname), a.attname)::regclass
        WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
        """,
        (TABLES,),
    )


# PostgreSQL does not deparse `varchar_col IN (...)` to a fixed point: the migrations store
# `(c)::text = ANY ((ARRAY['a'::character varying])::text[])`; re-parsing that text (which is
# what applying schema.sql does) stores `(c)::text = ANY (ARRAY[('a'::character varying)::text])`.
# Same semantics, different text, so both sides are rewritten to the second spelling.
_VARCHAR_ARRAY_AS_TEXT = re.compile(r"\(\(ARRAY\[((?:'(?:[^']|'')*'::character varying(?:, )?)+)\]\)::text\[\]\)")
_VARCHAR_LITERAL = re.compile(r"'(?:[^']|'')*'::character varying")


def canonical(definition: str) -> str:
    def per_element(match: re.Match[str]) -> str:
        elements = _VARCHAR_LITERAL.findall(match.group(1))
        return "(ARRAY[" + ", ".join(f"({e})::text" for e in elements) + "])"

    return _VARCHAR_ARRAY_AS_TEXT.sub(per_element, definition)


def constraints_of(url: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        url,
        """
        SELECT con.conname, c.relname, con.contype, pg_get_constraintdef(con.oid)
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY(%s)
        """,
        (TABLES,),
    )
    return {name: (table, kind, canonical(definition)) for name, table, kind, definition in rows}


def indexes_of(url: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        url,
        "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY(%s)",
        (TABLES,),
    )
    return {name: (table, canonical(definition)) for name, table, definition in rows}


def published_tables(url: str) -> list[str]:
    rows = query(
        url,
        "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND schemaname = 'public' ORDER BY 1",
    )
    return [name for (name,) in rows]


def test_schema_sql_builds_exactly_fedmls_tables(schema_sql_db: str, migrated_db: str) -> None:
    assert TABLES == [
        "federated_runs",
        "log_lines",
        "node_enrollments",
        "node_sessions",
        "nodes",
        "project_events",
        "projects",
        "round_metrics",
        "supervisor_heartbeats",
        "users",
    ]
    assert [row[0] for row in tables_of(migrated_db)] == TABLES
    assert tables_of(schema_sql_db) == tables_of(migrated_db)
    # Nothing else: no django_migrations, auth or session tables leak into the file.
    others = query(
        schema_sql_db,
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND relkind IN ('r', 'p', 'v', 'm') AND NOT relname = ANY(%s)",
        (TABLES,),
    )
    assert others == []


def test_schema_sql_columns_match_migrations(schema_sql_db: str, migrated_db: str) -> None:
    migrated = columns_of(migrated_db)
    assert migrated, "the migrated database has no FedML columns"
    assert columns_of(schema_sql_db) == migrated


def test_schema_sql_keeps_postgres_only_defaults_from_migration_0002(schema_sql_db: str) -> None:
    # 0002 sets these with RunPython: a generator reading model state alone would miss them.
    defaults = {(t, c): d for t, c, _type, _nn, d, *_ in columns_of(schema_sql_db)}
    assert defaults[("projects", "id")] == "gen_random_uuid()"
    assert defaults[("federated_runs", "config")] == "'{}'::jsonb"
    assert defaults[("node_sessions", "status")] == "'starting'::text"  # schema.sql's, since 0009
    assert defaults[("users", "id")] == "gen_random_uuid()"


def test_schema_sql_constraints_match_migrations(schema_sql_db: str, migrated_db: str) -> None:
    # A foreign key to a table outside the file (users -> Django's auth_user, Supabase's auth.users)
    # is added only where that table exists: a scratch database built from the file has none.
    outside = ("REFERENCES auth_user(", "REFERENCES auth.users(")
    migrated = {k: v for k, v in constraints_of(migrated_db).items() if not any(o in v[2] for o in outside)}
    assert "log_lines_one_owner" in migrated
    assert constraints_of(schema_sql_db) == migrated


def test_schema_sql_indexes_match_migrations(schema_sql_db: str, migrated_db: str) -> None:
    migrated = indexes_of(migrated_db)
    assert "node_sessions_one_live_superlink" in migrated
    assert indexes_of(schema_sql_db) == migrated


def test_canonical_only_respells_varchar_in_lists() -> None:
    stored = "CHECK (((kind)::text = ANY ((ARRAY['a'::character varying, 'b''c'::character varying])::text[])))"
    reparsed = "CHECK (((kind)::text = ANY (ARRAY[('a'::character varying)::text, ('b''c'::character varying)::text])))"
    assert canonical(stored) == canonical(reparsed) == reparsed
    assert canonical("CHECK ((round >= 0))") == "CHECK ((round >= 0))"


def test_schema_sql_constraints_still_enforce_choices_and_one_live_run(schema_sql_db: str) -> None:
    # The respelled IN-list constraints and partial unique indexes must still bite.
    with psycopg.connect(schema_sql_db) as conn:
        (project,) = conn.execute("INSERT INTO projects (slug, name) VALUES ('p', 'P') RETURNING id").fetchone()
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
            conn.execute("INSERT INTO nodes (external_id, role, project_id) VALUES ('n', 'bogus', %s)", (project,))
        insert_run = "INSERT INTO federated_runs (project_id, status, flower_run_id, federation_name, log_path, status_detail) VALUES (%s, %s, '', '', '', '')"
        conn.execute(insert_run, (project, "completed"))
        conn.execute(insert_run, (project, "running"))
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute(insert_run, (project, "starting"))
        conn.rollback()


def test_generate_schema_check_passes_on_committed_schema_sql() -> None:
    # The CI gate: fails when a migration changed and db/schema.sql was not regenerated.
    call_command("generate_schema", "--check", "--admin-url", ADMIN_URL)


def test_generate_schema_check_fails_with_clear_message_when_file_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_schema, "generate", lambda admin_url: SCHEMA_SQL.read_text() + "-- drift\n")
    with pytest.raises(CommandError, match=r"^db/schema\.sql is stale: run python manage\.py generate_schema$"):
        call_command("generate_schema", "--check", "--admin-url", ADMIN_URL)


def test_schema_sql_is_deterministic_plain_sql_with_generated_header() -> None:
    text = SCHEMA_SQL.read_text()
    assert text.startswith("-- FedML database schema")
    assert "GENERATED by `python manage.py generate_schema`" in text.splitlines()[2]
    for volatile in ("\\restrict", "\\unrestrict", "-- Dumped from", "-- Dumped by", "set_config('search_path'"):
        assert volatile not in text
    # psql meta-commands would break a single cursor.execute() of the file.
    assert not [line for line in text.splitlines() if line.startswith("\\")]


def test_schema_sql_adds_tables_to_existing_supabase_realtime_publication(scratch_db: ScratchDb) -> None:
    url = scratch_db()
    query_ddl(url, "CREATE PUBLICATION supabase_realtime")
    apply_with_cursor(url)
    assert published_tables(url) == TABLES
    # The realtime block skips tables already published, so re-running it is harmless.
    text = SCHEMA_SQL.read_text()
    query_ddl(url, text[text.rindex("DO $$") :])  # the realtime block is the last one
    assert published_tables(url) == TABLES


def test_schema_sql_applies_cleanly_with_psql_without_realtime_publication(scratch_db: ScratchDb) -> None:
    url = scratch_db()
    apply_with_psql(url)
    assert [row[0] for row in tables_of(url)] == TABLES
    assert query(url, "SELECT pubname FROM pg_publication") == []


def test_schema_sql_leaves_applying_session_usable(scratch_db: ScratchDb) -> None:
    # No leaked `SET search_path = ''` etc.: the same connection keeps working unqualified.
    url = scratch_db()
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA_SQL.read_text())
        conn.execute("INSERT INTO projects (slug, name) VALUES ('demo', 'Demo')")
        (project_id,) = conn.execute("SELECT id FROM projects WHERE slug = 'demo'").fetchone()
        assert project_id is not None
