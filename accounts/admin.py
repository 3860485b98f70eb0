from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.models import ApiToken, AuditEvent, Membership, Node, Person, Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("id", "created_at", "updated_at")


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("external_id", "display_name", "role", "project", "created_at")
    list_filter = ("role", "project")
    search_fields = ("external_id", "display_name")
    readonly_fields = ("id", "created_at", "updated_at")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "node", "created_at")
    list_filter = ("role", "project")

    def save_model(self, request: HttpRequest, obj: Membership, form: object, change: bool) -> None:
        # Role changes go through the service, which validates and audits them.
        membership = services.membership_set(
            user=obj.user, project=obj.project, role=obj.role, node=obj.node, actor=request.user, via="admin"
        )
        obj.pk = membership.pk


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created with their secret shown once; revoking keeps the row for the audit trail."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_tokens"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, secret = services.api_token_create(user=obj.user, name=obj.name, actor=request.user, via="admin")
        obj.pk, obj.prefix = token.pk, token.prefix
        messages.warning(request, f"Token {token.prefix} created. Copy it now, it is not shown again: {secret}")

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            services.api_token_revoke(prefix=token.prefix, actor=request.user, via="admin")


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    """People (table `users`): id is the Supabase user's id (the JWT's `sub`)."""

    list_display = ("email", "display_name", "role", "django_user", "created_at")
    list_filter = ("role",)
    search_fields = ("id", "email", "display_name", "django_user__username")
    readonly_fields = ("created_at", "updated_at")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ("at", "actor_label", "action", "target", "outcome", "via", "remote_addr")
    list_filter = ("outcome", "action", "via")
    search_fields = ("actor_label", "action", "target")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
