"""A reader of schema files (CREATE TABLE / ALTER TABLE ... ADD CONSTRAINT) into tables and columns.

Used by the dashboard schema tests (see tests/schema_contract.py for the rules they check): the dashboard's
schema.sql and FedML's db/schema.sql are read the same way, and live_tables reads a database into the same form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
