"""Database-side behaviour on PostgreSQL/Supabase, so rows written by other clients (Supabase's
REST layer, plain SQL) behave as the original schema promised:

- column defaults (ids from gen_random_uuid(), timestamps, empty text/json);
- ON DELETE CASCADE / SET NULL on the foreign keys (Django 5.2 emulates on_delete in Python
  only; deleting a project through Supabase must still cascade).

Django sets these values itself; SQLite needs nothing.
"""

from __future__ import annotations

from django.db import migrations

DEFAULTS = {
    "projects": {
        "id": "gen_random_uuid()",
        "created_at": "now()",
        "updated_at": "now()",
        "config": "'{}'::jsonb",
        "description": "''",
    },
    "nodes": {
        "id": "gen_random_uuid()",
        "created_at": "now()",
        "updated_at": "now()",
        "metadata": "'{}'::jsonb",
        "display_name": "''",
    },
    "node_sessions": {
        "id": "gen_random_uuid()",
        "created_at": "now()",
        "runtime_config": "'{}'::jsonb",
        "log_stream": "''",
        "status": "'requested'",
        "log_path": "''",
        "status_detail": "''",
    },
    "federated_runs": {
        "id": "gen_random_uuid()",
        "created_at": "now()",
        "config": "'{}'::jsonb",
        "metrics": "'{}'::jsonb",
        "log_stream": "''",
        "status": "'requested'",
        "label": "''",
        "flower_run_id": "''",
        "federation_name": "''",
        "log_path": "''",
        "status_detail": "''",
    },
    "log_lines": {"source": "''", "ts": "now()"},
    "round_metrics": {"aggregated": "'{}'::jsonb", "per_node": "'{}'::jsonb", "created_at": "now()"},
    "supervisor_heartbeats": {"id": "gen_random_uuid()"},
}

# (table, column, referenced table, action)
FOREIGN_KEYS = [
    ("nodes", "project_id", "projects", "CASCADE"),
    ("node_sessions", "node_id", "nodes", "CASCADE"),
    ("federated_runs", "project_id", "projects", "CASCADE"),
    ("federated_runs", "coordinator_session_id", "node_sessions", "SET NULL"),
    ("log_lines", "session_id", "node_sessions", "CASCADE"),
    ("log_lines", "run_id", "federated_runs", "CASCADE"),
    ("round_metrics", "run_id", "federated_runs", "CASCADE"),
]

FK_NAME_SQL = """
SELECT con.conname FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_attribute att ON att.attrelid = rel.oid AND att.attnum = con.conkey[1]
WHERE con.contype = 'f' AND rel.relname = %s AND att.attname = %s
"""


def _apply(apps, schema_editor, *, reverse: bool) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, columns in DEFAULTS.items():
        for column, default in columns.items():
            action = "DROP DEFAULT" if reverse else f"SET DEFAULT {default}"
            schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" {action}')
    with schema_editor.connection.cursor() as cursor:
        for table, column, target, action in FOREIGN_KEYS:
            cursor.execute(FK_NAME_SQL, [table, column])
            for (name,) in cursor.fetchall():
                schema_editor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            on_delete = "NO ACTION" if reverse else action
            schema_editor.execute(
                f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_{column}_fkey" FOREIGN KEY ("{column}") '
                f'REFERENCES "{target}" ("id") ON DELETE {on_delete} DEFERRABLE INITIALLY DEFERRED'
            )


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0001_initial")]

    operations = [
        migrations.RunPython(
            lambda apps, se: _apply(apps, se, reverse=False),
            lambda apps, se: _apply(apps, se, reverse=True),
        ),
    ]
