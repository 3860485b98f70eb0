"""Projects, the nodes that take part in them, and the people behind them: who may see what.

`projects` and `nodes` are part of db/schema.sql (the Supabase schema); memberships, tokens,
identities and the audit log are Django-side only.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    config = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Last ProjectEvent.seq handed out; the row lock on this update orders concurrent writers.
    event_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        db_table = "projects"
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class NodeRole(models.TextChoices):
    COORDINATOR = "coordinator"
    PARTICIPANT = "participant"


class Node(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="nodes")
    external_id = models.CharField(max_length=200, unique=True)
    role = models.CharField(max_length=20, choices=NodeRole.choices)
    display_name = models.CharField(max_length=200, blank=True, default="")
    metadata = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "nodes"
        ordering = ["external_id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=NodeRole.values), name="nodes_role_check"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name or self.external_id} ({self.role})"


class Membership(models.Model):
    """A user's role in a project. A participant is bound to its node."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=NodeRole.choices)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, null=True, blank=True, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "project_memberships"
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="project_memberships_user_project_uniq"),
            models.CheckConstraint(
                condition=Q(role=NodeRole.COORDINATOR) | Q(node__isnull=False),
                name="project_memberships_participant_has_node",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.project}"


class ApiToken(models.Model):
    """A bearer token for scripts and the dashboard's server side. Only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "api_tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class SupabaseIdentity(models.Model):
    """Maps a Supabase Auth user (the JWT's `sub`) to a FedML user."""

    subject = models.CharField(max_length=200, unique=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="supabase_identity")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "supabase_identities"

    def __str__(self) -> str:
        return f"{self.subject} -> {self.user}"


class AuditEvent(models.Model):
    """Who did what, when, from where, and the outcome. Append-only."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_label = models.CharField(max_length=200)  # kept if the user is deleted; "cli:<user>" for commands
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=200, blank=True, default="")
    outcome = models.CharField(max_length=10)  # ok | denied | error
    remote_addr = models.CharField(max_length=64, blank=True, default="")
    via = models.CharField(max_length=20, blank=True, default="")  # api | admin | command | websocket
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "audit_events"
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.outcome}"
