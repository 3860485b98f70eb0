"""People, projects, the nodes that take part in them, and who may see what.

`users`, `projects` and `nodes` are a superset of the dashboard's Supabase schema
(../shared/seed-dashboard/schema.sql): every column there exists here with a compatible type,
nullability and default. Explicit grants, tokens, refresh tokens and the audit log are FedML's own.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class UserRole(models.TextChoices):
    ADMIN = "admin"
    CLIENT = "client"


class Person(models.Model):
    """Someone who signs in (table `users`): `id` is the auth user's id, the Supabase JWT's `sub`.

    Linked to a Django user, which carries the password (embedded sign-in) and staff flags.
    FedML's own users get a row with a fresh id.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    role = models.TextField(choices=UserRole.choices, default=UserRole.CLIENT)
    email = models.TextField(null=True, blank=True)
    display_name = models.TextField(null=True, blank=True)
    metadata = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    django_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="person"
    )

    class Meta:
        db_table = "users"
        ordering = ["email"]
        verbose_name = "person"
        constraints = [models.CheckConstraint(condition=Q(role__in=UserRole.values), name="users_role_check")]

    def __str__(self) -> str:
        return self.email or self.display_name or str(self.id)


class JoinPolicy(models.TextChoices):
    OPEN = "open"  # a participant who joins takes part at once (the dashboard's behaviour)
    APPROVAL = "approval"  # a coordinator approves or refuses each join


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.TextField(unique=True)
    name = models.TextField()
    description = models.TextField(null=True, blank=True)
    config = models.JSONField(blank=True, default=dict)
    created_by = models.ForeignKey(
        Person,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_column="created_by",
        db_index=False,  # idx_projects_created_by below, named as in the Supabase schema
        related_name="created_projects",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    join_policy = models.TextField(choices=JoinPolicy.choices, default=JoinPolicy.OPEN)
    # Last ProjectEvent.seq handed out; the row lock on this update orders concurrent writers.
    event_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        db_table = "projects"
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(join_policy__in=JoinPolicy.values), name="projects_join_policy_check"),
        ]
        indexes = [models.Index(fields=["created_by"], name="idx_projects_created_by")]

    def __str__(self) -> str:
        return self.slug


class NodeRole(models.TextChoices):
    COORDINATOR = "coordinator"
    PARTICIPANT = "participant"


class JoinStatus(models.TextChoices):
    APPROVED = "approved"
    PENDING = "pending"  # waiting for a coordinator (projects with the approval policy)
    REFUSED = "refused"


class NodeQuerySet(models.QuerySet["Node"]):
    def approved(self) -> NodeQuerySet:
        return self.filter(join_status=JoinStatus.APPROVED)


class Node(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="nodes")
    # Whose node it is: the project's coordinators and participants are these people.
    user = models.ForeignKey(
        Person, on_delete=models.SET_NULL, null=True, blank=True, db_index=False, related_name="nodes"
    )
    external_id = models.TextField(unique=True)
    role = models.TextField(choices=NodeRole.choices)
    display_name = models.TextField(null=True, blank=True)
    metadata = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    join_status = models.TextField(choices=JoinStatus.choices, default=JoinStatus.APPROVED)

    objects = NodeQuerySet.as_manager()

    class Meta:
        db_table = "nodes"
        ordering = ["external_id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=NodeRole.values), name="nodes_role_check"),
            models.CheckConstraint(condition=Q(join_status__in=JoinStatus.values), name="nodes_join_status_check"),
            # Joining is idempotent: one participant node per person per project, whatever the race.
            models.UniqueConstraint(
                fields=["project", "user"],
                condition=Q(role=NodeRole.PARTICIPANT) & Q(user__isnull=False),
                name="nodes_one_participant_node_per_user",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "role"], name="idx_nodes_project_role"),
            models.Index(fields=["user"], name="idx_nodes_user"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name or self.external_id} ({self.role})"


class Membership(models.Model):
    """An explicit grant of a role in a project (the admin's), besides the owners of its nodes.

    A participant is bound to its node."""

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


class RefreshToken(models.Model):
    """A refresh token of FedML's embedded sign-in (Supabase Auth's grant); only its hash is kept.

    Each refresh revokes the token it used and issues its child, as Supabase Auth does."""

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="refresh_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "auth_refresh_tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"refresh token of {self.person}"


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
