"""Projects and nodes now live in accounts (see accounts 0003): foreign keys follow, state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_projects_and_nodes"),
        ("orchestration", "0007_row_level_security"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="nodeenrollment",
                    name="node",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="enrollments", to="accounts.node"
                    ),
                ),
                migrations.AlterField(
                    model_name="nodesession",
                    name="node",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="sessions", to="accounts.node"
                    ),
                ),
                migrations.AlterField(
                    model_name="federatedrun",
                    name="project",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="runs", to="accounts.project"
                    ),
                ),
                migrations.AlterField(
                    model_name="projectevent",
                    name="project",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="accounts.project",
                    ),
                ),
                migrations.DeleteModel(
                    name="Node",
                ),
                migrations.DeleteModel(
                    name="Project",
                ),
            ],
        ),
    ]
