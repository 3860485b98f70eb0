"""Row-level security for Supabase's `anon`, `authenticated` and `service_role` roles.

Django connects as the tables' owner, which RLS does not restrict. Supabase's REST layer
connects as `authenticated` with the user's JWT claims in `request.jwt.claims`; FedML reads its
role model from `app_metadata`: `fedml_project_id`, `fedml_role` (coordinator | participant)
and, for a participant, `fedml_node_id`. Coordinators read their project; participants read
their project, runs and aggregated metrics, and only their own node's sessions, log lines and
enrollments (never per-node round metrics); anon reads nothing; service_role reads and writes all.
On plain PostgreSQL the three roles are created (NOLOGIN) if missing, so the same policies apply.
"""

from __future__ import annotations

from django.db import migrations

CLAIMS = "coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb"
PROJECT = f"({CLAIMS} #>> '{{app_metadata,fedml_project_id}}')"
NODE = f"({CLAIMS} #>> '{{app_metadata,fedml_node_id}}')"
COORDINATOR = f"({CLAIMS} #>> '{{app_metadata,fedml_role}}') = 'coordinator'"
VISIBLE_SESSIONS = (
    "SELECT s.id FROM node_sessions s JOIN nodes n ON n.id = s.node_id "
    f"WHERE n.project_id::text = {PROJECT} AND ({COORDINATOR} OR s.node_id::text = {NODE})"
)
PROJECT_RUNS = f"SELECT r.id FROM federated_runs r WHERE r.project_id::text = {PROJECT}"
PROJECT_NODES = f"SELECT n.id FROM nodes n WHERE n.project_id::text = {PROJECT}"

READ_POLICIES = {
    "projects": f"id::text = {PROJECT}",
    "nodes": f"project_id::text = {PROJECT}",
    # Not via VISIBLE_SESSIONS: a policy on node_sessions may not query node_sessions (recursion).
    "node_sessions": f"node_id IN ({PROJECT_NODES}) AND ({COORDINATOR} OR node_id::text = {NODE})",
    "federated_runs": f"project_id::text = {PROJECT}",
    "log_lines": f"session_id IN ({VISIBLE_SESSIONS}) OR run_id IN ({PROJECT_RUNS})",
    "round_metrics": f"{COORDINATOR} AND run_id IN ({PROJECT_RUNS})",
    "project_events": (
        f"project_id::text = {PROJECT} AND ({COORDINATOR} OR type IN ('run.status', 'run.deleted') "
        f"OR payload->>'node_id' = {NODE})"
    ),
    "node_enrollments": f"node_id IN ({PROJECT_NODES}) AND ({COORDINATOR} OR node_id::text = {NODE})",
    "supervisor_heartbeats": COORDINATOR,
}
ROLES = ("anon", "authenticated", "service_role")


def _forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for role in ROLES:
        schema_editor.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
        )
    for table, condition in READ_POLICIES.items():
        schema_editor.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        schema_editor.execute(f'GRANT SELECT ON "{table}" TO anon, authenticated')
        schema_editor.execute(f'GRANT ALL ON "{table}" TO service_role')
        schema_editor.execute(
            f'CREATE POLICY "{table}_read" ON "{table}" FOR SELECT TO authenticated USING ({condition})'
        )
        schema_editor.execute(
            f'CREATE POLICY "{table}_service" ON "{table}" FOR ALL TO service_role USING (true) WITH CHECK (true)'
        )


def _backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in READ_POLICIES:
        schema_editor.execute(f'DROP POLICY IF EXISTS "{table}_read" ON "{table}"')
        schema_editor.execute(f'DROP POLICY IF EXISTS "{table}_service" ON "{table}"')
        schema_editor.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0006_node_enrollments_postgres")]

    operations = [migrations.RunPython(_forward, _backward)]
