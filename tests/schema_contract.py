"""FedML's tables are a superset of the dashboard's Supabase schema.

The dashboard (seed-dashboard: its schema.sql and the route handlers in frontend/app/api/**,
which run with Supabase's service role) must keep working against a PostgreSQL that FedML's
migrations manage. Its schema.sql is located through FEDML_SEED_DASHBOARD, else
<repo>/../shared/seed-dashboard, else /work/shared/seed-dashboard; without it these tests fail.

schema.sql is parsed into tables and columns (type, NOT NULL, DEFAULT, CHECK ... IN values,
REFERENCES target and ON DELETE, PRIMARY KEY/UNIQUE) and compared column by column with
(a) db/schema.sql, parsed the same way, and (b) a live PostgreSQL migrated by `manage.py migrate`
(information_schema.columns, pg_constraint), and also the database this leg of the suite runs on
(all rules on PostgreSQL; on SQLite, which has no database defaults, columns and nullability).
Compatibility rules, for every column of schema.sql:

1. It exists in FedML, in the same type family: uuid=uuid, text=text, jsonb=jsonb,
   timestamptz=timestamptz, integer=integer. varchar is NOT compatible with text (the dashboard
   may insert longer strings).
2. Nullability matches, except that a column nullable in schema.sql may be NOT NULL in FedML when
   FedML has the database default the dashboard's inserts rely on; those columns are listed in
   NOT_NULL_WITH_DEFAULT (and the dashboard's route handlers never write NULL into them).
3. Defaults, normalised (case outside literals, casts to text types dropped: gen_random_uuid(),
   now(), '{}'::jsonb, '', 'starting'): where schema.sql has a default, FedML has the same one;
   where a nullable column of schema.sql has none, FedML has none (an insert that omits it reads
   back NULL, e.g. federated_runs.label); where a NOT NULL column of schema.sql has none, FedML
   may have one (every insert names that column, so it is never used).
4. Every value of a CHECK (column IN (...)) in schema.sql is accepted by FedML's CHECKs on that
   column (FedML may accept more), and so is schema.sql's default of a column FedML checks.
5. Every REFERENCES of schema.sql exists in FedML with the same target table and ON DELETE
   action. A target outside FedML's tables (Supabase's auth.users) is referenced only where it
   exists: db/schema.sql adds it in a conditional DO block; a migrated database has it exactly
   when auth.users existed at migrate time (test_users_id_references_auth_users_only_where_it_exists).
6. PRIMARY KEY and UNIQUE columns of schema.sql are primary key / unique in FedML.
7. FedML's own extra columns, in the tables the dashboard's route handlers insert into, are
   nullable or have a default: an insert naming only schema.sql's columns must succeed.

Besides the columns: every status value the dashboard's code compares against (`x.status === "..."`,
`switch (status)` cases of functions applied to `x.status`, and `type ...Status... = "a" | "b"`
unions; "all", a filter's no-filter value, aside) is one FedML accepts for that table (its CHECK)
or writes (the model field's choices). And the statements the route handlers perform, run as
plain SQL with the service role in a migrated database, succeed with FedML's defaults filled in,
and FedML's ORM reads the rows back.

The PostgreSQL parts always use a real PostgreSQL, whatever database the rest of the suite runs
on: the server of DATABASE_URL when that is PostgreSQL, else 127.0.0.1:5432 as user postgres
(FEDML_TEST_PG_ADMIN_URL overrides both). They create uniquely named throwaway databases, run
`manage.py migrate` into them in a subprocess, and drop them afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from django.apps import apps

from orchestration.management.commands.generate_schema import DEFAULT_ADMIN_URL, database_url
from tests.schema_sql_parse import (
    Column,
    ForeignKey,
    Tables,
    default_literal,
    in_list,
    normalise_default,
    parse_schema,
    type_family,
    unquote,
)

ROOT = Path(__file__).resolve().parent.parent
FEDML_SCHEMA_SQL = ROOT / "db" / "schema.sql"
SEED_ENV = "FEDML_SEED_DASHBOARD"
SEED_FALLBACKS = (ROOT.parent / "shared" / "seed-dashboard", Path("/work/shared/seed-dashboard"))

# Nullable in schema.sql, NOT NULL in FedML: the dashboard's inserts omit them and get the
# (identical) database default; its route handlers never write NULL into them.
NOT_NULL_WITH_DEFAULT = frozenset(
    {
        ("users", "metadata"),
        ("users", "created_at"),
        ("users", "updated_at"),
        ("projects", "config"),
        ("projects", "created_at"),
        ("projects", "updated_at"),
        ("nodes", "metadata"),
        ("nodes", "created_at"),
        ("nodes", "updated_at"),
        ("node_sessions", "runtime_config"),
        ("node_sessions", "log_stream"),
        ("node_sessions", "created_at"),
        ("federated_runs", "config"),
        ("federated_runs", "log_stream"),
        ("federated_runs", "metrics"),
    }
)

# The no-filter value of the dashboard's run status filter, never stored.
FILTER_ALL = "all"

# Values the dashboard only displays or filters by, that FedML names otherwise on purpose: FedML's
# words keep who ended a process ("stopped": someone asked; "exited": it ended by itself with 0).
# The dashboard then shows such a row under its generic style; nothing it writes is refused.
DISPLAY_ONLY_STATUSES = {
    ("federated_runs", "cancelled"): "FedML says `stopped` for a run someone stopped",
    ("node_sessions", "completed"): "FedML says `exited` (code 0) or `stopped` for an ended process",
}


# --- Locating the dashboard ---------------------------------------------------------------------


def locate_seed_dashboard() -> Path:
    explicit = os.environ.get(SEED_ENV)
    candidates = [Path(explicit)] if explicit else list(SEED_FALLBACKS)
    for candidate in candidates:
        if (candidate / "schema.sql").is_file():
            return candidate
    tried = ", ".join(str(c / "schema.sql") for c in candidates)
    where = f"{SEED_ENV}={explicit}" if explicit else f"{SEED_ENV} unset, so the defaults"
    pytest.fail(f"the dashboard's schema.sql was not found ({where}; tried {tried}): set {SEED_ENV}")


@pytest.fixture(scope="module")
def seed_dir() -> Path:
    return locate_seed_dashboard()


@pytest.fixture(scope="module")
def seed_tables(seed_dir: Path) -> Tables:
    tables = parse_schema((seed_dir / "schema.sql").read_text())
    assert tables, f"no CREATE TABLE found in {seed_dir / 'schema.sql'}"
    return tables


@pytest.fixture(scope="module")
def fedml_sql_tables() -> Tables:
    return parse_schema(FEDML_SCHEMA_SQL.read_text())


# --- The comparison -----------------------------------------------------------------------------


def incompatibilities(seed: Tables, fedml: Tables, *, inserted: set[str], absent_targets: frozenset[str]) -> list[str]:
    """The rules of the module docstring; one message per violation.

    inserted: the tables the dashboard's route handlers insert into (rule 7).
    absent_targets: referenced tables that do not exist where `fedml` was read (a migrated
    database without Supabase's auth schema); references to them are checked elsewhere.
    """
    problems: list[str] = []
    for table, columns in seed.items():
        if table not in fedml:
            problems.append(f"{table}: table missing")
            continue
        for name, want in columns.items():
            where = f"{table}.{name}"
            have = fedml[table].get(name)
            if have is None:
                problems.append(f"{where}: column missing")
                continue
            if have.type != want.type:
                problems.append(f"{where}: type {have.type} in FedML, {want.type} in schema.sql")
            if want.not_null and not have.not_null:
                problems.append(f"{where}: nullable in FedML, NOT NULL in schema.sql")
            if have.not_null and not want.not_null and (table, name) not in NOT_NULL_WITH_DEFAULT:
                problems.append(
                    f"{where}: NOT NULL in FedML, nullable in schema.sql (and not in NOT_NULL_WITH_DEFAULT)"
                )
            if want.default is not None and have.default != want.default:
                problems.append(f"{where}: default {have.default or '(none)'} in FedML, {want.default} in schema.sql")
            if want.default is None and not want.not_null and have.default is not None:
                problems.append(
                    f"{where}: default {have.default} in FedML; schema.sql has none, so an insert omitting it reads NULL"
                )
            if want.accepted is not None and have.accepted is not None and not want.accepted <= have.accepted:
                refused = sorted(want.accepted - have.accepted)
                problems.append(f"{where}: FedML's CHECK refuses {refused}, which schema.sql accepts")
            literal = default_literal(want.default)
            if have.accepted is not None and literal is not None and literal not in have.accepted:
                problems.append(f"{where}: FedML's CHECK refuses schema.sql's default {want.default}")
            for reference in want.foreign_keys:
                if reference.target in absent_targets:
                    continue
                found = [fk for fk in have.foreign_keys if fk.target == reference.target]
                if not found:
                    problems.append(f"{where}: no foreign key to {reference.target}")
                    continue
                if all(fk.on_delete != reference.on_delete for fk in found):
                    actions = sorted({fk.on_delete for fk in found})
                    problems.append(
                        f"{where}: ON DELETE {'/'.join(actions)} in FedML, {reference.on_delete} in schema.sql"
                    )
                if reference.target in fedml and all(fk.conditional for fk in found):
                    problems.append(f"{where}: the foreign key to {reference.target} is only conditional in FedML")
            if want.primary_key and not have.primary_key:
                problems.append(f"{where}: not the primary key in FedML")
            elif want.unique and not (have.unique or have.primary_key):
                problems.append(f"{where}: not unique in FedML")
        if table in inserted:
            for name, have in fedml[table].items():
                if name not in columns and have.not_null and have.default is None:
                    problems.append(
                        f"{table}.{name}: FedML's own column is NOT NULL without a default, so the dashboard's "
                        "inserts (which name schema.sql's columns only) fail"
                    )
    return problems


# --- What the dashboard's code does -------------------------------------------------------------


def frontend_sources(seed_dir: Path) -> dict[str, str]:
    frontend = seed_dir / "frontend"
    assert frontend.is_dir(), f"the dashboard's frontend is missing: {frontend}"
    sources = {}
    for path in sorted([*frontend.rglob("*.ts"), *frontend.rglob("*.tsx")]):
        relative = path.relative_to(frontend)
        if relative.parts[0] in ("node_modules", ".next"):
            continue
        sources[str(relative)] = path.read_text()
    return sources


def inserted_tables(seed_dir: Path) -> set[str]:
    """Tables the route handlers insert into (`.from("t").insert(`)."""
    inserts = set()
    for path, text in frontend_sources(seed_dir).items():
        if path.startswith("app/api/"):
            inserts |= set(re.findall(r"\.from\(\s*[\"'](\w+)[\"']\s*\)\s*\.(?:insert|upsert)\(", text))
    return inserts


_STATUS_COMPARED = re.compile(
    r"(?P<receiver>\w+)\??\.status\??(?:\.toLowerCase\(\))?\s*[!=]==?\s*(?P<q>[\"'])(?P<value>[^\"']*)(?P=q)"
)
_STATUS_COMPARED_REVERSED = re.compile(
    r"(?P<q>[\"'])(?P<value>[^\"']*)(?P=q)\s*[!=]==?\s*(?P<receiver>\w+)\??\.status\b"
)
_STATUS_SWITCH = re.compile(
    r"const\s+(?P<function>\w+)\s*=\s*\(\s*(?P<param>\w*status\w*)\s*:\s*string\s*\)\s*=>\s*\{\s*"
    r"switch\s*\(\s*(?P=param)(?:\.toLowerCase\(\))?\s*\)\s*\{",
    re.I,
)
_STATUS_TYPE = re.compile(r"\btype\s+(?P<name>\w*Status\w*)\s*=\s*(?P<union>[^;]+);")
_CASE = re.compile(r"\bcase\s+(?P<q>[\"'])(?P<value>[^\"']*)(?P=q)\s*:")


def table_of(name: str) -> str | None:
    lowered = name.lower()
    if "session" in lowered:
        return "node_sessions"
    if "run" in lowered:
        return "federated_runs"
    return None


def dashboard_status_values(seed_dir: Path) -> tuple[dict[str, dict[str, set[str]]], list[str]]:
    """{table: {status value: {file, ...}}} for every status the frontend compares against, and
    the comparisons whose table could not be told."""
    found: dict[str, dict[str, set[str]]] = {}
    unknown: list[str] = []

    def record(receiver: str, value: str, path: str) -> None:
        table = table_of(receiver)
        if table is None:
            unknown.append(f"{path}: {receiver}.status compared with {value!r}")
        else:
            found.setdefault(table, {}).setdefault(value, set()).add(path)

    for path, text in frontend_sources(seed_dir).items():
        for pattern in (_STATUS_COMPARED, _STATUS_COMPARED_REVERSED):
            for match in pattern.finditer(text):
                record(match["receiver"], match["value"], path)
        for match in _STATUS_SWITCH.finditer(text):
            body = text[match.end() - 1 : _closing_brace(text, match.end() - 1) + 1]
            values = [case["value"] for case in _CASE.finditer(body)]
            call = rf"\b{match['function']}\(\s*(?:\w+\??\.)*(?P<receiver>\w+)\??\.status\b"
            receivers = {call_match["receiver"] for call_match in re.finditer(call, text)}
            if not receivers:
                unknown.append(f"{path}: {match['function']}() is never applied to a .status")
            for receiver in receivers:
                for value in values:
                    record(receiver, value, path)
        for match in _STATUS_TYPE.finditer(text):
            for value in re.findall(r"[\"']([^\"']*)[\"']", match["union"]):
                if value != FILTER_ALL:
                    record(match["name"], value, path)
    return found, unknown


def _closing_brace(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced braces after: {text[opening : opening + 80]!r}")


def model_choices(table: str, column: str) -> set[str]:
    for model in apps.get_models():
        if model._meta.db_table == table:
            return {str(value) for value, _label in model._meta.get_field(column).choices or ()}
    return set()


# --- PostgreSQL ---------------------------------------------------------------------------------


def admin_url() -> str:
    if explicit := os.environ.get("FEDML_TEST_PG_ADMIN_URL"):
        return explicit
    suite = os.environ.get("DATABASE_URL", "")
    if suite.startswith(("postgres://", "postgresql://")):
        return database_url(suite, "postgres")
    return DEFAULT_ADMIN_URL


ScratchDb = Callable[..., str]


def migrate(url: str) -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py migrate into {url} failed:\n{result.stderr or result.stdout}")


ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def live_tables(url: str, tables: list[str]) -> Tables:
    """The public tables of a live database, as parse_schema reads a file."""
    result: Tables = {}
    with psycopg.connect(url) as conn:
        for table, column, data_type, not_null, default in conn.execute(
            """
            SELECT table_name, column_name, data_type, is_nullable = 'NO', column_default
            FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = ANY(%s)
            ORDER BY table_name, ordinal_position
            """,
            (tables,),
        ):
            result.setdefault(table, {})[column] = Column(type_family(data_type), not_null, normalise_default(default))
        for table, kind, columns, definition, target, on_delete in conn.execute(
            """
            SELECT rel.relname, con.contype::text,
                   ARRAY(SELECT a.attname::text FROM pg_attribute a
                         WHERE a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey) ORDER BY a.attnum),
                   pg_get_constraintdef(con.oid), con.confrelid::regclass::text, con.confdeltype::text
            FROM pg_constraint con
            JOIN pg_class rel ON rel.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = rel.relnamespace
            WHERE n.nspname = 'public' AND rel.relname = ANY(%s) AND con.contype IN ('c', 'f', 'p', 'u')
            """,
            (tables,),
        ):
            if len(columns) != 1:
                continue
            column = result[table][columns[0]]
            if kind == "c":
                checked = in_list(definition)
                if checked and checked[0] == columns[0]:
                    column.accept_only(checked[1])
            elif kind == "f":
                column.foreign_keys.append(ForeignKey(unquote(target), ON_DELETE[on_delete]))
            elif kind == "p":
                column.primary_key = column.unique = True
            else:
                column.unique = True
    return result


def foreign_keys_to_auth(url: str) -> list[tuple[str, str]]:
    """(definition, validated?) of every foreign key from public.users to the auth schema."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT pg_get_constraintdef(con.oid), con.convalidated::text
            FROM pg_constraint con
            JOIN pg_class target ON target.oid = con.confrelid
            JOIN pg_namespace tn ON tn.oid = target.relnamespace
            WHERE con.contype = 'f' AND con.conrelid = 'public.users'::regclass AND tn.nspname = 'auth'
            """
        ).fetchall()
    return [(definition, validated) for definition, validated in rows]
