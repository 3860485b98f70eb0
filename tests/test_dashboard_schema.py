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

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.apps import apps
from django.db import connection
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from orchestration.management.commands.generate_schema import DEFAULT_ADMIN_URL, database_url

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


# --- Parsing CREATE TABLE / ALTER TABLE ---------------------------------------------------------


@dataclass(frozen=True)
class ForeignKey:
    target: str  # "users"; another schema's table qualified: "auth.users"
    on_delete: str  # CASCADE, SET NULL, NO ACTION, ...
    conditional: bool = False  # added only where the target exists (a DO block of db/schema.sql)


@dataclass
class Column:
    type: str
    not_null: bool = False
    default: str | None = None  # normalised, see normalise_default
    accepted: frozenset[str] | None = None  # values of CHECK (column IN (...)); None: no such check
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    primary_key: bool = False
    unique: bool = False

    def accept_only(self, values: frozenset[str]) -> None:
        self.accepted = values if self.accepted is None else self.accepted & values


Tables = dict[str, dict[str, Column]]

TYPE_FAMILIES = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "bool": "boolean",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "character varying": "varchar",
    "character": "char",
}


def type_family(declared: str) -> str:
    name = " ".join(re.sub(r"\(.*\)", "", declared).lower().split())
    return TYPE_FAMILIES.get(name, name)


_LITERAL = re.compile(r"'(?:[^']|'')*'")
_TEXT_CAST = re.compile(r"::(?:text|character varying|varchar)(?:\(\d+\))?(?![\w\[])")


def normalise_default(expression: str | None) -> str | None:
    """`'{}'::JSONB` -> `'{}'::jsonb`, `NOW()` -> `now()`, `'x'::character varying` -> `'x'`."""
    if expression is None:
        return None
    parts = _LITERAL.split(expression)
    literals = _LITERAL.findall(expression)
    text = parts[0].lower()
    for literal, rest in zip(literals, parts[1:], strict=True):
        text += literal + rest.lower()
    text = " ".join(_TEXT_CAST.sub("", text).split())
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return {"current_timestamp": "now()"}.get(text, text)


def default_literal(default: str | None) -> str | None:
    """The string a normalised default stands for, when it is a plain literal ('starting')."""
    if default is not None and _LITERAL.fullmatch(default):
        return default[1:-1].replace("''", "'")
    return None


def _balanced(text: str) -> bool:
    depth = 0
    for char in mask(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def mask(text: str) -> str:
    """text with the insides of '...' and "..." blanked (same length): regexes then see SQL only."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", lambda m: m[0][0] + " " * (len(m[0]) - 2) + m[0][-1], text)


def _depths(masked: str) -> list[int]:
    depths, depth = [], 0
    for char in masked:
        if char == ")":
            depth -= 1
        depths.append(depth)
        if char == "(":
            depth += 1
    return depths


def split_top_level(text: str) -> list[str]:
    masked = mask(text)
    depths = _depths(masked)
    items, start = [], 0
    for index, char in enumerate(masked):
        if char == "," and depths[index] == 0:
            items.append(text[start:index])
            start = index + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _closing_paren(text: str, opening: int) -> int:
    masked = mask(text)
    depth = 0
    for index in range(opening, len(masked)):
        depth += {"(": 1, ")": -1}.get(masked[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced parentheses after: {text[opening : opening + 80]!r}")


def strip_comments(text: str) -> str:
    masked = mask(text)
    for match in reversed(list(re.finditer(r"--[^\n]*", masked))):
        text = text[: match.start()] + text[match.end() :]
    return text


def unquote(identifier: str) -> str:
    name = identifier.replace('"', "").lower()
    return name.removeprefix("public.")


_CLAUSE = re.compile(
    r"\b(PRIMARY\s+KEY|NOT\s+NULL|(?<!SET )NULL|(?<!SET )DEFAULT|REFERENCES|CHECK|UNIQUE|CONSTRAINT|COLLATE|GENERATED)\b",
    re.IGNORECASE,
)
_IN_LIST = re.compile(r"^\s*(?:CHECK\b)?[\s(]*(?P<col>\w+)[\s)]*(?:::[\w ]+?[\s)]*)?(?:\bIN\s*\(|=\s*ANY\s*\()", re.I)
_REFERENCES = re.compile(r"REFERENCES\s+(?P<target>[\w.\"]+)\s*(?:\([^)]*\))?(?P<rest>.*)", re.I | re.S)
_ON_DELETE = re.compile(r"ON\s+DELETE\s+(CASCADE|SET\s+NULL|SET\s+DEFAULT|RESTRICT|NO\s+ACTION)", re.I)


def in_list(expression: str) -> tuple[str, frozenset[str]] | None:
    """`CHECK (role IN ('a', 'b'))` or PostgreSQL's `CHECK ((role = ANY (ARRAY['a'::text, ...])))`
    -> ("role", {"a", "b"}); None for any other check."""
    masked = mask(expression)
    if re.search(r"\b(AND|OR|NOT)\b", masked, re.I):
        return None
    match = _IN_LIST.match(masked)
    if match is None:
        return None
    values = frozenset(literal[1:-1].replace("''", "'") for literal in _LITERAL.findall(expression))
    return match["col"].lower(), values


def foreign_key(clause: str, *, conditional: bool = False) -> ForeignKey:
    match = _REFERENCES.search(clause)
    assert match, f"not a REFERENCES clause: {clause!r}"
    on_delete = _ON_DELETE.search(match["rest"])
    action = " ".join(on_delete[1].upper().split()) if on_delete else "NO ACTION"
    return ForeignKey(unquote(match["target"]), action, conditional)


def _column_definition(item: str) -> tuple[str, Column]:
    match = re.match(r'\s*("(?:[^"]|"")+"|\w+)\s+', item)
    assert match, f"cannot read a column from {item!r}"
    name, rest = unquote(match[1]), item[match.end() :]
    masked = mask(rest)
    depths = _depths(masked)
    starts = [m for m in _CLAUSE.finditer(masked) if depths[m.start()] == 0]
    column = Column(type_family(rest[: starts[0].start()] if starts else rest))
    for index, clause_match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(rest)
        keyword = " ".join(clause_match[1].upper().split())
        argument = rest[clause_match.end() : end].strip()
        if keyword == "PRIMARY KEY":
            column.primary_key = column.not_null = column.unique = True
        elif keyword == "NOT NULL":
            column.not_null = True
        elif keyword == "DEFAULT":
            column.default = normalise_default(argument)
        elif keyword == "REFERENCES":
            column.foreign_keys.append(foreign_key(f"REFERENCES {argument}"))
        elif keyword == "CHECK":
            checked = in_list(argument)
            if checked and checked[0] == name:
                column.accept_only(checked[1])
        elif keyword == "UNIQUE":
            column.unique = True
    return name, column


def _table_constraint(tables: Tables, table: str, body: str, *, conditional: bool = False) -> None:
    """A table constraint (CONSTRAINT name already stripped) on one column: CHECK, PRIMARY KEY,
    UNIQUE or FOREIGN KEY. Multi-column ones are not part of the comparison."""
    columns = tables[table]
    head = body.lstrip().upper()
    if head.startswith("CHECK"):
        checked = in_list(body)
        if checked and checked[0] in columns:
            columns[checked[0]].accept_only(checked[1])
        return
    listed = re.match(r"\s*(PRIMARY\s+KEY|UNIQUE|FOREIGN\s+KEY)\s*\(([^)]*)\)", body, re.I)
    if listed is None:
        return
    names = [unquote(n.strip()) for n in listed[2].split(",")]
    if len(names) != 1 or names[0] not in columns:
        return
    column = columns[names[0]]
    kind = " ".join(listed[1].upper().split())
    if kind == "PRIMARY KEY":
        column.primary_key = column.not_null = column.unique = True
    elif kind == "UNIQUE":
        column.unique = True
    else:
        column.foreign_keys.append(foreign_key(body[listed.end() :], conditional=conditional))


_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w.\"]+)\s*\(", re.I)
_ALTER_ADD_CONSTRAINT = re.compile(
    r"ALTER\s+TABLE\s+(?:ONLY\s+)?(?P<table>[\w.\"]+)\s+ADD\s+CONSTRAINT\s+[\w\"]+\s+(?P<body>[^;]+);", re.I
)
_DO_BLOCK = re.compile(r"\bDO\s+\$\$.*?\$\$", re.S | re.I)


def parse_schema(text: str) -> Tables:
    """The public tables of a schema file: CREATE TABLE columns and inline constraints, then
    ALTER TABLE ... ADD CONSTRAINT (those inside DO blocks marked conditional)."""
    text = strip_comments(text)
    masked = mask(text)
    tables: Tables = {}
    for match in _CREATE_TABLE.finditer(masked):
        name = match["name"].replace('"', "").lower()
        if "." in name and not name.startswith("public."):
            continue
        closing = _closing_paren(text, match.end() - 1)
        columns: dict[str, Column] = {}
        tables[unquote(name)] = columns
        constraints = []
        for item in split_top_level(text[match.end() : closing]):
            named = re.match(r"CONSTRAINT\s+[\w\"]+\s+", item, re.I)
            body = item[named.end() :] if named else item
            if re.match(r"(CHECK|PRIMARY\s+KEY|UNIQUE|FOREIGN\s+KEY|EXCLUDE)\b", body, re.I):
                constraints.append(body)
            else:
                column_name, column = _column_definition(item)
                columns[column_name] = column
        for body in constraints:
            _table_constraint(tables, unquote(name), body)
    blocks = [m.span() for m in _DO_BLOCK.finditer(masked)]
    for match in _ALTER_ADD_CONSTRAINT.finditer(masked):
        table = unquote(match["table"])
        if table in tables:
            inside = any(start <= match.start() < end for start, end in blocks)
            _table_constraint(tables, table, text[match.start("body") : match.end("body")], conditional=inside)
    return tables


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
