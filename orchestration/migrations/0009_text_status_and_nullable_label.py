"""Statuses become `text` and a run's label nullable, as in the dashboard's Supabase schema.

On PostgreSQL the database defaults follow schema.sql: a session row inserted by another client
starts as 'starting'; a run's label is NULL unless given; `started_at` defaults to now() for rows
other clients insert (FedML's own inserts name the column: NULL until the process starts).
"""

from django.db import migrations, models


def _postgres(apps, schema_editor, *, reverse: bool) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    status = "'requested'" if reverse else "'starting'"
    label = "SET DEFAULT ''" if reverse else "DROP DEFAULT"
    schema_editor.execute(f"ALTER TABLE node_sessions ALTER COLUMN status SET DEFAULT {status}")
    schema_editor.execute(f"ALTER TABLE federated_runs ALTER COLUMN label {label}")
    started = "DROP DEFAULT" if reverse else "SET DEFAULT now()"
    for table in ("node_sessions", "federated_runs"):
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN started_at {started}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_people_and_project_owners"),
        ("orchestration", "0008_projects_and_nodes_moved_to_accounts"),
    ]

    operations = [
        migrations.AlterField(
            model_name="federatedrun",
            name="label",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="federatedrun",
            name="status",
            field=models.TextField(
                choices=[
                    ("requested", "Requested"),
                    ("starting", "Starting"),
                    ("running", "Running"),
                    ("stopping", "Stopping"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                    ("stopped", "Stopped"),
                ],
                default="requested",
            ),
        ),
        migrations.AlterField(
            model_name="nodesession",
            name="status",
            field=models.TextField(
                choices=[
                    ("requested", "Requested"),
                    ("starting", "Starting"),
                    ("running", "Running"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("exited", "Exited"),
                    ("failed", "Failed"),
                    ("lost", "Lost"),
                ],
                default="requested",
            ),
        ),
        migrations.AddIndex(
            model_name="federatedrun",
            index=models.Index(fields=["project", "status"], name="idx_runs_project_status"),
        ),
        migrations.RunPython(
            lambda apps, se: _postgres(apps, se, reverse=False),
            lambda apps, se: _postgres(apps, se, reverse=True),
        ),
    ]
