"""Database-side defaults on PostgreSQL/Supabase, so rows inserted by other clients
(Supabase's REST layer, SQL) get ids and timestamps as the original schema gave them.
Django sets these values itself; SQLite needs nothing.
"""

from __future__ import annotations

from django.db import migrations

DEFAULTS = {
    "projects": {"id": "gen_random_uuid()", "created_at": "now()", "updated_at": "now()", "config": "'{}'::jsonb", "description": "''"},
    "nodes": {"id": "gen_random_uuid()", "created_at": "now()", "updated_at": "now()", "metadata": "'{}'::jsonb", "display_name": "''"},
    "node_sessions": {
        "id": "gen_random_uuid()",
        "created_at": "now()",
        "runtime_config": "'{}'::jsonb",
        "log_stream": "''",
        "status": "'requested'",
    },
    "federated_runs": {
        "id": "gen_random_uuid()",
        "created_at": "now()",
        "config": "'{}'::jsonb",
        "metrics": "'{}'::jsonb",
        "log_stream": "''",
        "status": "'requested'",
        "label": "''",
    },
}


def _apply(apps, schema_editor, *, drop: bool) -> None:  # noqa: ANN001 - migration signature
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, columns in DEFAULTS.items():
        for column, default in columns.items():
            action = "DROP DEFAULT" if drop else f"SET DEFAULT {default}"
            schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" {action}')


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0001_initial")]

    operations = [
        migrations.RunPython(
            lambda apps, se: _apply(apps, se, drop=False),
            lambda apps, se: _apply(apps, se, drop=True),
        ),
    ]
