"""Database-side behaviour on PostgreSQL/Supabase, so rows written by other clients (Supabase's
REST layer, plain SQL) behave as the original schema promised:

- column defaults (ids from gen_random_uuid(), timestamps, empty text/json);
- ON DELETE CASCADE / SET NULL on the foreign keys (Django 5.2 emulates on_delete in Python
  only; deleting a project through Supabase must still cascade).

Django sets these values itself; SQLite needs nothing.
"""

from __future__ import annotations

from django.db import migrations

from core.pgschema import apply

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


def _apply(apps, schema_editor, *, reverse: bool) -> None:
    apply(schema_editor, defaults=DEFAULTS, foreign_keys=FOREIGN_KEYS, reverse=reverse)


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0001_initial")]

    operations = [
        migrations.RunPython(
            lambda apps, se: _apply(apps, se, reverse=False),
            lambda apps, se: _apply(apps, se, reverse=True),
        ),
    ]
