"""PostgreSQL defaults and ON DELETE for the event columns added in 0003."""

from __future__ import annotations

from django.db import migrations

from core.pgschema import apply

DEFAULTS = {
    "projects": {"event_seq": "0"},
    "project_events": {"payload": "'{}'::jsonb", "created_at": "now()"},
}
FOREIGN_KEYS = [("project_events", "project_id", "projects", "CASCADE")]


def _apply(apps, schema_editor, *, reverse: bool) -> None:
    apply(schema_editor, defaults=DEFAULTS, foreign_keys=FOREIGN_KEYS, reverse=reverse)


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0003_project_events")]

    operations = [
        migrations.RunPython(
            lambda apps, se: _apply(apps, se, reverse=False),
            lambda apps, se: _apply(apps, se, reverse=True),
        ),
    ]
