"""FedML's tables are a superset of the dashboard's Supabase schema: the schema reader itself, and
(a) db/schema.sql and the dashboard's code against the dashboard's schema.sql.

The compatibility rules, and the helpers that check them, are in tests/schema_contract.py; the schema
reader is tests/schema_sql_parse.py; the live PostgreSQL parts, (b) to (d), are in
tests/test_dashboard_schema_postgres.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.schema_contract import (
    DISPLAY_ONLY_STATUSES,
    NOT_NULL_WITH_DEFAULT,
    dashboard_status_values,
    fedml_sql_tables,
    frontend_sources,
    incompatibilities,
    inserted_tables,
    model_choices,
    seed_dir,
    seed_tables,
)
from tests.schema_sql_parse import Column, ForeignKey, Tables, parse_schema

# Fixtures of tests/schema_contract.py, shared with the other dashboard schema module: pytest finds
# them by these names here.
SHARED_FIXTURES = (fedml_sql_tables, seed_dir, seed_tables)


# --- The parser itself --------------------------------------------------------------------------


def test_parser_reads_the_forms_both_files_use() -> None:
    tables = parse_schema(
        """
        -- a comment, with 'quotes' and (parens
        CREATE TABLE t (
            id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            owner UUID REFERENCES public.users(id) ON DELETE SET NULL,
            role TEXT NOT NULL CHECK (role IN ('a', 'b''c')),
            meta JSONB DEFAULT '{}'::JSONB,
            at TIMESTAMPTZ DEFAULT NOW(),
            name character varying(20) DEFAULT 'x, y'::character varying NOT NULL,
            CONSTRAINT t_name_check CHECK (((name)::text = ANY ((ARRAY['x, y'::character varying])::text[])))
        );
        ALTER TABLE ONLY public.t
            ADD CONSTRAINT t_name_key UNIQUE (name);
        DO $$ BEGIN IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
            ALTER TABLE ONLY public.t ADD CONSTRAINT t_id_fkey FOREIGN KEY (id) REFERENCES auth.users(id) ON DELETE CASCADE;
        END IF; END $$;
        """
    )
    t = tables["t"]
    assert t["id"] == Column(
        "uuid",
        not_null=True,
        default="gen_random_uuid()",
        primary_key=True,
        unique=True,
        foreign_keys=[ForeignKey("auth.users", "CASCADE", conditional=True)],
    )
    assert t["owner"] == Column("uuid", foreign_keys=[ForeignKey("users", "SET NULL")])
    assert t["role"] == Column("text", not_null=True, accepted=frozenset({"a", "b'c"}))
    assert t["meta"] == Column("jsonb", default="'{}'::jsonb")
    assert t["at"] == Column("timestamptz", default="now()")
    assert t["name"] == Column("varchar", not_null=True, default="'x, y'", accepted=frozenset({"x, y"}), unique=True)


# --- (a) db/schema.sql --------------------------------------------------------------------------


def test_db_schema_sql_is_a_superset_of_the_dashboard_schema(
    seed_dir: Path, seed_tables: Tables, fedml_sql_tables: Tables
) -> None:
    assert set(seed_tables) == {"users", "projects", "nodes", "node_sessions", "federated_runs"}
    problems = incompatibilities(
        seed_tables, fedml_sql_tables, inserted=inserted_tables(seed_dir), absent_targets=frozenset()
    )
    assert problems == [], "db/schema.sql is not compatible with the dashboard's schema.sql:\n" + "\n".join(problems)


def test_not_null_with_default_lists_exactly_the_columns_that_need_it(
    seed_tables: Tables, fedml_sql_tables: Tables
) -> None:
    needing = {
        (table, name)
        for table, columns in seed_tables.items()
        for name, column in columns.items()
        if not column.not_null and fedml_sql_tables.get(table, {}).get(name, Column("")).not_null
    }
    assert needing == NOT_NULL_WITH_DEFAULT
    for table, name in sorted(NOT_NULL_WITH_DEFAULT):
        assert seed_tables[table][name].default is not None, f"{table}.{name} has no default in schema.sql"


def test_dashboard_route_handlers_never_write_null_into_not_null_with_default_columns(seed_dir: Path) -> None:
    names = sorted({name for _table, name in NOT_NULL_WITH_DEFAULT})
    writes = [
        f"{path}: {match[0]}"
        for path, text in frontend_sources(seed_dir).items()
        if path.startswith("app/api/")
        for match in re.finditer(rf"\b(?:{'|'.join(names)})\s*:\s*null\b", text)
    ]
    assert writes == []


def test_dashboard_inserts_into_users_projects_and_nodes(seed_dir: Path) -> None:
    # Rule 7 covers these; a new insert elsewhere widens it automatically.
    assert {"users", "projects", "nodes"} <= inserted_tables(seed_dir)


def test_every_status_the_dashboard_compares_against_is_one_fedml_accepts_or_writes(
    seed_dir: Path, fedml_sql_tables: Tables
) -> None:
    found, unknown = dashboard_status_values(seed_dir)
    assert unknown == [], "status comparisons whose table is unknown (extend table_of):\n" + "\n".join(unknown)
    # The scan itself works: both tables' "running" checks are found.
    assert "running" in found.get("federated_runs", {})
    assert "running" in found.get("node_sessions", {})
    problems = []
    for table, values in sorted(found.items()):
        accepted = fedml_sql_tables[table]["status"].accepted or set()
        writable = model_choices(table, "status")
        for value, paths in sorted(values.items()):
            if value not in accepted | writable and (table, value) not in DISPLAY_ONLY_STATUSES:
                problems.append(
                    f"{table}.status: the dashboard compares with {value!r} ({', '.join(sorted(paths))}); "
                    f"FedML accepts {sorted(accepted)}"
                )
    assert problems == [], "\n".join(problems)
