"""Who may see what. Django-side only (not part of db/schema.sql, which mirrors Supabase)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from orchestration.models import Node, NodeRole, Project


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
