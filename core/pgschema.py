"""PostgreSQL-only schema touches shared by the apps' migrations: column defaults and ON DELETE actions."""

from __future__ import annotations

from typing import Any

FK_NAME_SQL = """
SELECT con.conname FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_attribute att ON att.attrelid = rel.oid AND att.attnum = con.conkey[1]
WHERE con.contype = 'f' AND rel.relname = %s AND att.attname = %s
"""


def apply(
    schema_editor: Any,
    *,
    defaults: dict[str, dict[str, str]],
    foreign_keys: list[tuple[str, str, str, str]],
    reverse: bool,
) -> None:
    """Set column defaults and ON DELETE actions (Django 5.2 emulates on_delete in Python only)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, columns in defaults.items():
        for column, default in columns.items():
            action = "DROP DEFAULT" if reverse else f"SET DEFAULT {default}"
            schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" {action}')
    with schema_editor.connection.cursor() as cursor:
        for table, column, target, on_delete in foreign_keys:
            cursor.execute(FK_NAME_SQL, [table, column])
            for (name,) in cursor.fetchall():
                schema_editor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            action = "NO ACTION" if reverse else on_delete
            schema_editor.execute(
                f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_{column}_fkey" FOREIGN KEY ("{column}") '
                f'REFERENCES "{target}" ("id") ON DELETE {action} DEFERRABLE INITIALLY DEFERRED'
            )
