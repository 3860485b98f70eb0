"""People (`users`, as in the dashboard's Supabase schema), project owners, node owners, join approval.

- `users.id` is the Supabase user's id: each Supabase identity (subject -> Django user) becomes a
  person with that id; every other Django user gets a person with a fresh id.
- Names and statuses become `text`, and `description`/`display_name` nullable, as in schema.sql.
- On PostgreSQL: database defaults for rows that other clients (the dashboard's route handlers,
  Supabase's REST layer) insert; ON DELETE SET NULL for owners; `users.id` references
  `auth.users` only where that schema exists (Supabase); row-level security on the new tables.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.pgschema import apply

DEFAULTS = {
    "users": {
        "id": "gen_random_uuid()",
        "role": "'client'",
        "metadata": "'{}'::jsonb",
        "created_at": "now()",
        "updated_at": "now()",
    },
    "projects": {"join_policy": "'open'"},
    "nodes": {"join_status": "'approved'"},
}
DROPPED_DEFAULTS = {"projects": ["description"], "nodes": ["display_name"]}  # NULL, as in schema.sql
FOREIGN_KEYS = [
    ("projects", "created_by", "users", "SET NULL"),
    ("nodes", "user_id", "users", "SET NULL"),
]
SERVICE_ONLY = ("api_tokens", "audit_events", "project_memberships", "auth_refresh_tokens")
CLAIMED_SUB = "(coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb ->> 'sub')"


def _people_from_users_and_identities(apps, schema_editor) -> None:
    person = apps.get_model("accounts", "Person")
    identity = apps.get_model("accounts", "SupabaseIdentity")
    user_model = apps.get_model(*settings.AUTH_USER_MODEL.split("."))

    def fields(user) -> dict:
        return {
            "django_user_id": user.pk,
            "email": user.email or None,
            "display_name": user.get_full_name() if hasattr(user, "get_full_name") else user.username,
            "role": "admin" if user.is_staff or user.is_superuser else "client",
        }

    for row in identity.objects.all():
        try:
            subject = uuid.UUID(row.subject)
        except ValueError:
            continue  # not a Supabase user id; that user gets a fresh one below
        user = user_model.objects.get(pk=row.user_id)
        person.objects.get_or_create(id=subject, defaults=fields(user))
    linked = set(person.objects.exclude(django_user_id=None).values_list("django_user_id", flat=True))
    for user in user_model.objects.exclude(pk__in=linked):
        person.objects.create(**fields(user))


def _postgres_forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    apply(schema_editor, defaults=DEFAULTS, foreign_keys=FOREIGN_KEYS, reverse=False)
    for table, columns in DROPPED_DEFAULTS.items():
        for column in columns:
            schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" DROP DEFAULT')
    # Supabase: a person is an auth user. Elsewhere there is no auth schema to reference.
    schema_editor.execute(
        "DO $$ BEGIN IF to_regclass('auth.users') IS NOT NULL THEN "
        "ALTER TABLE users ADD CONSTRAINT users_id_auth_fkey FOREIGN KEY (id) REFERENCES auth.users(id) "
        "ON DELETE CASCADE NOT VALID; END IF; END $$"
    )
    schema_editor.execute('ALTER TABLE "users" ENABLE ROW LEVEL SECURITY')
    schema_editor.execute('GRANT SELECT ON "users" TO authenticated')
    schema_editor.execute('GRANT ALL ON "users" TO service_role')
    schema_editor.execute(
        f'CREATE POLICY "users_read" ON "users" FOR SELECT TO authenticated USING (id::text = {CLAIMED_SUB})'
    )
    schema_editor.execute(
        'CREATE POLICY "users_service" ON "users" FOR ALL TO service_role USING (true) WITH CHECK (true)'
    )
    for table in SERVICE_ONLY:
        schema_editor.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        schema_editor.execute(f'GRANT ALL ON "{table}" TO service_role')
        schema_editor.execute(
            f'CREATE POLICY "{table}_service" ON "{table}" FOR ALL TO service_role USING (true) WITH CHECK (true)'
        )


def _postgres_backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in ("users", *SERVICE_ONLY):
        schema_editor.execute(f'DROP POLICY IF EXISTS "{table}_read" ON "{table}"')
        schema_editor.execute(f'DROP POLICY IF EXISTS "{table}_service" ON "{table}"')
        schema_editor.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
    schema_editor.execute("ALTER TABLE users DROP CONSTRAINT IF EXISTS users_id_auth_fkey")
    schema_editor.execute("ALTER TABLE projects ALTER COLUMN description SET DEFAULT ''")
    schema_editor.execute("ALTER TABLE nodes ALTER COLUMN display_name SET DEFAULT ''")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_projects_and_nodes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="RefreshToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token_hash", models.CharField(max_length=64, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "auth_refresh_tokens",
                "ordering": ["-created_at"],
            },
        ),
        migrations.AddField(
            model_name="node",
            name="join_status",
            field=models.TextField(
                choices=[("approved", "Approved"), ("pending", "Pending"), ("refused", "Refused")], default="approved"
            ),
        ),
        migrations.AddField(
            model_name="project",
            name="join_policy",
            field=models.TextField(choices=[("open", "Open"), ("approval", "Approval")], default="open"),
        ),
        migrations.AlterField(
            model_name="node",
            name="display_name",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="node",
            name="external_id",
            field=models.TextField(unique=True),
        ),
        migrations.AlterField(
            model_name="node",
            name="role",
            field=models.TextField(choices=[("coordinator", "Coordinator"), ("participant", "Participant")]),
        ),
        migrations.AlterField(
            model_name="project",
            name="description",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="project",
            name="name",
            field=models.TextField(),
        ),
        migrations.AlterField(
            model_name="project",
            name="slug",
            field=models.TextField(unique=True),
        ),
        migrations.CreateModel(
            name="Person",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("role", models.TextField(choices=[("admin", "Admin"), ("client", "Client")], default="client")),
                ("email", models.TextField(blank=True, null=True)),
                ("display_name", models.TextField(blank=True, null=True)),
                ("metadata", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "django_user",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="person",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "person",
                "db_table": "users",
                "ordering": ["email"],
            },
        ),
        migrations.AddField(
            model_name="node",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="nodes",
                to="accounts.person",
            ),
        ),
        migrations.AddField(
            model_name="project",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                db_column="created_by",
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="created_projects",
                to="accounts.person",
            ),
        ),
        migrations.AddIndex(
            model_name="node",
            index=models.Index(fields=["project", "role"], name="idx_nodes_project_role"),
        ),
        migrations.AddIndex(
            model_name="node",
            index=models.Index(fields=["user"], name="idx_nodes_user"),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(fields=["created_by"], name="idx_projects_created_by"),
        ),
        migrations.AddConstraint(
            model_name="node",
            constraint=models.CheckConstraint(
                condition=models.Q(("join_status__in", ["approved", "pending", "refused"])),
                name="nodes_join_status_check",
            ),
        ),
        migrations.AddConstraint(
            model_name="project",
            constraint=models.CheckConstraint(
                condition=models.Q(("join_policy__in", ["open", "approval"])), name="projects_join_policy_check"
            ),
        ),
        migrations.AddField(
            model_name="refreshtoken",
            name="person",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="refresh_tokens", to="accounts.person"
            ),
        ),
        migrations.AddConstraint(
            model_name="person",
            constraint=models.CheckConstraint(
                condition=models.Q(("role__in", ["admin", "client"])), name="users_role_check"
            ),
        ),
        migrations.AddConstraint(
            model_name="node",
            constraint=models.UniqueConstraint(
                condition=models.Q(("role", "participant"), ("user__isnull", False)),
                fields=("project", "user"),
                name="nodes_one_participant_node_per_user",
            ),
        ),
        migrations.RunPython(_people_from_users_and_identities, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="supabaseidentity",
            name="user",
        ),
        migrations.DeleteModel(
            name="SupabaseIdentity",
        ),
        migrations.RunPython(_postgres_forward, _postgres_backward),
    ]
