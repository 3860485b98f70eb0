"""Projects and nodes move from orchestration to accounts (who takes part sits below what runs).

State only: the tables `projects` and `nodes` stay as they are, so db/schema.sql is unchanged.
Existing content types (admin log entries, permissions) follow the models.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models


def _content_types_follow(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="orchestration", model__in=["project", "node"]).update(app_label="accounts")


def _content_types_go_back(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="accounts", model__in=["project", "node"]).update(app_label="orchestration")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_tokens_identities_audit"),
        ("orchestration", "0007_row_level_security"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(_content_types_follow, _content_types_go_back),
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Node",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("external_id", models.CharField(max_length=200, unique=True)),
                        (
                            "role",
                            models.CharField(
                                choices=[("coordinator", "Coordinator"), ("participant", "Participant")], max_length=20
                            ),
                        ),
                        ("display_name", models.CharField(blank=True, default="", max_length=200)),
                        ("metadata", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "nodes",
                        "ordering": ["external_id"],
                    },
                ),
                migrations.CreateModel(
                    name="Project",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("slug", models.SlugField(max_length=100, unique=True)),
                        ("name", models.CharField(max_length=200)),
                        ("description", models.TextField(blank=True, default="")),
                        ("config", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("event_seq", models.BigIntegerField(default=0, editable=False)),
                    ],
                    options={
                        "db_table": "projects",
                        "ordering": ["slug"],
                    },
                ),
                migrations.AlterField(
                    model_name="membership",
                    name="node",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="accounts.node",
                    ),
                ),
                migrations.AddField(
                    model_name="node",
                    name="project",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="nodes", to="accounts.project"
                    ),
                ),
                migrations.AlterField(
                    model_name="membership",
                    name="project",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="accounts.project"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="node",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("role__in", ["coordinator", "participant"])), name="nodes_role_check"
                    ),
                ),
            ],
        ),
    ]
