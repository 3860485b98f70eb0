"""PostgreSQL defaults and ON DELETE for node_enrollments (added in 0005)."""

from __future__ import annotations

from django.db import migrations

from core.pgschema import apply

DEFAULTS = {
    "node_enrollments": {
        "id": "gen_random_uuid()",
        "status": "'requested'",
        "flower_node_id": "''",
        "detail": "''",
        "created_at": "now()",
    },
}
FOREIGN_KEYS = [("node_enrollments", "node_id", "nodes", "CASCADE")]


def _apply(apps, schema_editor, *, reverse: bool) -> None:
    apply(schema_editor, defaults=DEFAULTS, foreign_keys=FOREIGN_KEYS, reverse=reverse)


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0005_node_enrollments")]

    operations = [
        migrations.RunPython(
            lambda apps, se: _apply(apps, se, reverse=False),
            lambda apps, se: _apply(apps, se, reverse=True),
        ),
    ]
