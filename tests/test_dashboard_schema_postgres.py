"""FedML's tables are a superset of the dashboard's Supabase schema, in live PostgreSQL databases:
(b) a migrated database and the suite's own, (c) users.id -> auth.users, (d) the dashboard's route
handlers' statements.

The compatibility rules, and the helpers that check them, are in tests/schema_contract.py; the schema
reader is tests/schema_sql_parse.py; the parser and db/schema.sql, (a), are in tests/test_dashboard_schema.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from orchestration.management.commands.generate_schema import database_url
from tests.schema_contract import (
    FEDML_SCHEMA_SQL,
    NOT_NULL_WITH_DEFAULT,
    ROOT,
    ScratchDb,
    admin_url,
    fedml_sql_tables,
    foreign_keys_to_auth,
    incompatibilities,
    inserted_tables,
    live_tables,
    migrate,
    seed_dir,
    seed_tables,
)
from tests.schema_sql_parse import Column, ForeignKey, Tables

# Fixtures of tests/schema_contract.py, shared with the other dashboard schema module: pytest finds
# them by these names here.
SHARED_FIXTURES = (fedml_sql_tables, seed_dir, seed_tables)

SUPABASE_AUTH = ("CREATE SCHEMA auth", "CREATE TABLE auth.users (id uuid PRIMARY KEY)")


@pytest.fixture(scope="module")
def scratch_db() -> Iterator[ScratchDb]:
    """Creates throwaway databases (optionally with Supabase's auth.users, then migrated or
    built from db/schema.sql); drops them all at the end of the module."""
    url = admin_url()
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"these tests need PostgreSQL at {url} (set FEDML_TEST_PG_ADMIN_URL): {exc}")
    names: list[str] = []

    def create(*, auth_users: bool = False, build: str = "migrate") -> str:
        name = f"fedml_dashboard_{uuid.uuid4().hex[:12]}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        names.append(name)
        db_url = database_url(url, name)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for statement in SUPABASE_AUTH if auth_users else ():
                conn.execute(statement)
            if build == "schema.sql":
                conn.execute(FEDML_SCHEMA_SQL.read_text())
        if build == "migrate":
            migrate(db_url)
        return db_url

    try:
        yield create
    finally:
        with admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def migrated_db(scratch_db: ScratchDb) -> str:
    return scratch_db()


# --- (b) a migrated PostgreSQL ------------------------------------------------------------------


def test_migrated_postgres_is_a_superset_of_the_dashboard_schema(
    seed_dir: Path, seed_tables: Tables, migrated_db: str
) -> None:
    live = live_tables(migrated_db, sorted(seed_tables))
    assert set(live) == set(seed_tables), "tables of schema.sql missing from the migrated database"
    # No auth schema here: users.id -> auth.users is checked by the test below.
    problems = incompatibilities(
        seed_tables, live, inserted=inserted_tables(seed_dir), absent_targets=frozenset({"auth.users"})
    )
    assert problems == [], "the migrated database is not compatible with the dashboard's schema.sql:\n" + "\n".join(
        problems
    )


def test_the_suites_own_database_has_the_dashboards_columns(seed_dir: Path, seed_tables: Tables, db: None) -> None:
    # The database this leg of the suite runs on: on PostgreSQL all the rules; on SQLite (whose
    # schema has no database defaults) every column exists with schema.sql's nullability.
    if connection.vendor == "postgresql":
        settings = connection.settings_dict
        url = make_conninfo(
            dbname=settings["NAME"],
            host=settings["HOST"] or None,
            port=settings["PORT"] or None,
            user=settings["USER"] or None,
            password=settings["PASSWORD"] or None,
        )
        problems = incompatibilities(
            seed_tables,
            live_tables(url, sorted(seed_tables)),
            inserted=inserted_tables(seed_dir),
            absent_targets=frozenset({"auth.users"}),
        )
    else:
        problems = []
        with connection.cursor() as cursor:
            for table, columns in seed_tables.items():
                described = {c.name: c for c in connection.introspection.get_table_description(cursor, table)}
                for name, want in columns.items():
                    have = described.get(name)
                    if have is None:
                        problems.append(f"{table}.{name}: column missing")
                    elif have.null_ok == want.not_null and (table, name) not in NOT_NULL_WITH_DEFAULT:
                        problems.append(
                            f"{table}.{name}: nullable {have.null_ok} here, {not want.not_null} in schema.sql"
                        )
    assert problems == [], f"the suite's {connection.vendor} database:\n" + "\n".join(problems)


def test_migrated_postgres_and_db_schema_sql_read_the_same(
    seed_tables: Tables, fedml_sql_tables: Tables, migrated_db: str
) -> None:
    # The two readings agree (so the parser, not just the schema, is checked). Foreign keys to
    # tables outside the file are conditional there (and present or not in the database).
    live = live_tables(migrated_db, sorted(seed_tables))

    def internal(column: Column) -> Column:
        keys = [ForeignKey(fk.target, fk.on_delete) for fk in column.foreign_keys if fk.target in fedml_sql_tables]
        return Column(**{**column.__dict__, "foreign_keys": keys})

    assert set(live) == set(seed_tables)
    for table in seed_tables:
        assert list(live[table]) == list(fedml_sql_tables[table]), table
        for name, column in fedml_sql_tables[table].items():
            assert internal(live[table][name]) == internal(column), f"{table}.{name}"


# --- (c) users.id -> auth.users -----------------------------------------------------------------


def test_users_id_references_auth_users_only_where_it_exists(scratch_db: ScratchDb, migrated_db: str) -> None:
    with_auth = scratch_db(auth_users=True)
    (definition, _validated), *others = foreign_keys_to_auth(with_auth)
    assert others == []
    assert definition.startswith("FOREIGN KEY (id) REFERENCES auth.users(id) ON DELETE CASCADE"), definition
    assert foreign_keys_to_auth(migrated_db) == []

    # Enforced: a users row needs its auth user, and goes with it.
    person, stranger = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(with_auth, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO users (id, role) VALUES (%s, 'client')", (stranger,))
        conn.execute("INSERT INTO auth.users (id) VALUES (%s)", (person,))
        conn.execute("INSERT INTO users (id, role) VALUES (%s, 'client')", (person,))
        conn.execute("DELETE FROM auth.users WHERE id = %s", (person,))
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_db_schema_sql_references_auth_users_only_where_it_exists(scratch_db: ScratchDb, migrated_db: str) -> None:
    with_auth = scratch_db(auth_users=True, build="schema.sql")
    migrated_with_auth = scratch_db(auth_users=True)
    assert [d for d, _ in foreign_keys_to_auth(with_auth)] == [d for d, _ in foreign_keys_to_auth(migrated_with_auth)]
    assert foreign_keys_to_auth(with_auth)
    assert foreign_keys_to_auth(scratch_db(build="schema.sql")) == []


# --- (d) the route handlers' statements ---------------------------------------------------------


ORM_READ = """
import json
from accounts.models import Node, Person, Project
project = Project.objects.select_related("created_by").get(id={project!r})
print(json.dumps({{
    "slug": project.slug,
    "name": project.name,
    "description": project.description,
    "config": project.config,
    "join_policy": project.join_policy,
    "created_by": str(project.created_by_id),
    "created_by_role": project.created_by.role,
    "created_at": bool(project.created_at),
    "nodes": [
        {{"external_id": n.external_id, "role": n.role, "user": str(n.user_id), "display_name": n.display_name,
          "metadata": n.metadata, "join_status": n.join_status, "created_at": bool(n.created_at)}}
        for n in Node.objects.approved().filter(project=project).order_by("role")
    ],
    "participant": [
        (p.email, p.display_name, p.metadata, p.role, p.nodes.count())
        for p in Person.objects.filter(id={participant!r})
    ],
}}))
"""


def orm_read(url: str, *, project: str, participant: str) -> dict[str, Any]:
    code = ORM_READ.format(project=project, participant=participant)
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dashboard_route_handler_statements_work_and_fedml_reads_their_rows(migrated_db: str) -> None:
    admin, participant = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.row_factory = dict_row
        conn.execute("SET ROLE service_role")  # what the route handlers run as, RLS and grants included

        # The people: rows as POST /api/client/projects/[id]/join inserts them.
        insert_user = "INSERT INTO users (id, role, email, display_name, metadata) VALUES (%s, %s, %s, %s, %s)"
        conn.execute(insert_user, (admin, "admin", "admin@example.org", "Admin", Jsonb({})))
        conn.execute(insert_user, (participant, "client", None, "Site A", Jsonb({"full_name": "A"})))
        person = conn.execute("SELECT * FROM users WHERE id = %s", (participant,)).fetchone()
        assert person["created_at"] is not None and person["updated_at"] is not None
        assert person["metadata"] == {"full_name": "A"} and person["email"] is None

        # POST /api/admin/projects: unique slug and external id, project, coordinator node.
        assert conn.execute("SELECT id FROM projects WHERE slug = %s", ("demo",)).fetchone() is None
        assert conn.execute("SELECT id FROM nodes WHERE external_id = %s", ("demo-coordinator",)).fetchone() is None
        project = conn.execute(
            "INSERT INTO projects (name, slug, description, created_by) VALUES (%s, %s, %s, %s) RETURNING *",
            ("Demo", "demo", None, admin),
        ).fetchone()
        assert project["id"] is not None and project["created_at"] is not None and project["updated_at"] is not None
        assert project["config"] == {} and project["description"] is None
        assert project["join_policy"] == "open"
        coordinator = conn.execute(
            "INSERT INTO nodes (project_id, user_id, external_id, role, display_name, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
            (
                project["id"],
                admin,
                "demo-coordinator",
                "coordinator",
                "Demo Coordinator",
                Jsonb({"registered_via": "admin_portal"}),
            ),
        ).fetchone()
        assert coordinator["id"] is not None and coordinator["created_at"] is not None
        assert coordinator["join_status"] == "approved"

        # POST /api/client/projects/[id]/join: look up, update the person, look for a node, insert one.
        assert conn.execute("SELECT * FROM projects WHERE id = %s", (project["id"],)).fetchone()["slug"] == "demo"
        conn.execute(
            "UPDATE users SET email = %s, display_name = %s, metadata = %s, updated_at = %s WHERE id = %s",
            ("a@example.org", "Site A", Jsonb({"full_name": "A"}), "2024-01-01T00:00:00Z", participant),
        )
        found = conn.execute("SELECT * FROM nodes WHERE project_id = %s AND user_id = %s", (project["id"], participant))
        assert found.fetchone() is None
        site = conn.execute(
            "INSERT INTO nodes (project_id, user_id, external_id, role, display_name, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
            (
                project["id"],
                participant,
                f"demo-participant-{participant[:6]}",
                "participant",
                "Site A",
                Jsonb({"registered_via": "client_portal"}),
            ),
        ).fetchone()
        assert site["join_status"] == "approved" and site["id"] is not None

        # The GET handlers' reads.
        listed = conn.execute("SELECT * FROM projects WHERE created_by = %s ORDER BY created_at DESC", (admin,))
        assert [p["id"] for p in listed.fetchall()] == [project["id"]]
        nodes = conn.execute("SELECT * FROM nodes WHERE project_id = %s ORDER BY created_at", (project["id"],))
        assert {n["role"] for n in nodes.fetchall()} == {"coordinator", "participant"}
        node_ids = [coordinator["id"], site["id"]]
        sessions = conn.execute(
            "SELECT * FROM node_sessions WHERE node_id = ANY(%s) ORDER BY created_at DESC LIMIT 100", (node_ids,)
        )
        assert sessions.fetchall() == []
        runs = conn.execute(
            "SELECT * FROM federated_runs WHERE project_id = %s ORDER BY started_at DESC LIMIT 20", (project["id"],)
        )
        assert runs.fetchall() == []

        # The create handler's clean-up when its node insert fails: delete the project, nodes go with it.
        doomed = conn.execute(
            "INSERT INTO projects (name, slug, description, created_by) VALUES ('X', 'x', 'x', %s) RETURNING id",
            (admin,),
        ).fetchone()["id"]
        conn.execute(
            "INSERT INTO nodes (project_id, user_id, external_id, role) VALUES (%s, %s, 'x-coordinator', 'coordinator')",
            (doomed, admin),
        )
        conn.execute("DELETE FROM projects WHERE id = %s", (doomed,))
        assert conn.execute("SELECT count(*) AS n FROM nodes WHERE project_id = %s", (doomed,)).fetchone()["n"] == 0

    read = orm_read(migrated_db, project=str(project["id"]), participant=participant)
    assert read["slug"] == "demo" and read["name"] == "Demo" and read["description"] is None
    assert read["config"] == {} and read["join_policy"] == "open" and read["created_at"]
    assert read["created_by"] == admin and read["created_by_role"] == "admin"
    assert read["nodes"] == [
        {
            "external_id": "demo-coordinator",
            "role": "coordinator",
            "user": admin,
            "display_name": "Demo Coordinator",
            "metadata": {"registered_via": "admin_portal"},
            "join_status": "approved",
            "created_at": True,
        },
        {
            "external_id": f"demo-participant-{participant[:6]}",
            "role": "participant",
            "user": participant,
            "display_name": "Site A",
            "metadata": {"registered_via": "client_portal"},
            "join_status": "approved",
            "created_at": True,
        },
    ]
    assert read["participant"] == [["a@example.org", "Site A", {"full_name": "A"}, "client", 1]]
