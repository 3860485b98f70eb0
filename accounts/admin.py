"""Admin for people, projects and their nodes. Writes go through accounts.services, never the models.

Who may act on a project here: superusers, and the project's coordinators (owners of its
coordinator nodes, explicit coordinator grants). Every admin user is staff, so staff alone (what
permissions.can_control_federation accepts) must not be enough: `coordinates` is the stricter rule.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from accounts import permissions, services
from accounts.models import ApiToken, AuditEvent, JoinPolicy, JoinStatus, Membership, Node, Person, Project
from accounts.services.people import person_of
from core.errors import ApplicationError


# ----------------------------------------------------------------- who coordinates what
class CoordinatedProjectsMixin:
    """Coordinators see their projects' rows without Django model permissions; nobody else's.

    Holders of the model's Django permissions (and superusers) keep seeing every row. Changing
    rows still needs Django's change permission: controls are the services' business."""

    project_lookup = "project"  # the row's project, as a queryset lookup ("pk" for projects themselves)

    def _project_of(self, obj: Any) -> Project:
        for part in self.project_lookup.split("__"):
            obj = obj if part == "pk" else getattr(obj, part)
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or bool(permissions.coordinated_project_ids(request.user))  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if super().has_view_permission(request, obj):  # type: ignore[misc]
            return True
        if obj is None:
            return bool(permissions.coordinated_project_ids(request.user))
        return permissions.coordinates(request.user, self._project_of(obj))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if super().has_view_permission(request):  # type: ignore[misc]
            return queryset
        return queryset.filter(
            **{f"{self.project_lookup}__in": permissions.coordinated_project_ids(request.user) or ()}
        )


# ----------------------------------------------------------------- projects
class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(
        required=False, max_length=100, help_text="Made from the name when empty; made unique either way."
    )
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    join_policy = forms.ChoiceField(
        choices=JoinPolicy.choices,
        initial=JoinPolicy.OPEN,
        help_text="open: a participant who joins takes part at once; approval: a coordinator decides each join.",
    )
    coordinator_display_name = forms.CharField(
        required=False, max_length=200, help_text="Default: “<name> Coordinator”"
    )
    coordinator_external_id = forms.CharField(
        required=False, max_length=200, help_text="Default: “<slug>-coordinator”; made unique."
    )


@admin.register(Project)
class ProjectAdmin(CoordinatedProjectsMixin, admin.ModelAdmin):
    """Adding a project creates its coordinator node, owned by the signed-in user (project_create)."""

    project_lookup = "pk"
    list_display = ("slug", "name", "join_policy", "created_by", "created_at")
    list_filter = ("join_policy",)
    search_fields = ("slug", "name")
    # Run-config defaults (config) are edited on the control page, through the validating service.
    readonly_fields = ("id", "created_by", "config", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Any staff user, as the dashboard lets anyone signed in: project_create applies FEDML_PROJECT_CREATORS.
        return permissions.is_staff(request.user)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ProjectCreateForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            created = self._create(request, form)
            if created is not None:
                return created
        context = {
            **self.admin_site.each_context(request),
            "title": "Add project",
            "subtitle": "The project and its coordinator node, owned by you",
            "opts": self.model._meta,
            "form": form,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/accounts/project/create_form.html", context)

    def _create(self, request: HttpRequest, form: ProjectCreateForm) -> HttpResponse | None:
        owner = person_of(request.user)
        if owner is None:
            form.add_error(None, "Your account has no person record here; sign in again.")
            return None
        data = {key: value or None for key, value in form.cleaned_data.items()}  # blank optional fields: defaults
        try:
            project, node = services.project_create(owner=owner, actor=request.user, via="admin", **data)
        except ApplicationError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            return None
        messages.success(request, f"Project {project.slug} created with its coordinator node {node.external_id}.")
        return HttpResponseRedirect(self.created_url(project))

    def created_url(self, project: Project) -> str:
        """Where the new project opens (orchestration's admin sends it to the project's control page)."""
        return f"../{project.pk}/change/"


# ----------------------------------------------------------------- nodes and joins
@admin.register(Node)
class NodeAdmin(CoordinatedProjectsMixin, admin.ModelAdmin):
    """Pending joins: filter join status = pending, then approve or refuse (coordinators only)."""

    list_display = ("external_id", "display_name", "role", "join_status", "project", "user", "created_at")
    list_filter = ("join_status", "role", ("project", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("project", "user")
    search_fields = ("external_id", "display_name")
    readonly_fields = ("id", "join_status", "created_at", "updated_at")
    actions = ["approve_joins", "refuse_joins"]

    @admin.action(description="Approve selected pending joins")
    def approve_joins(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        decide_joins(request, queryset, approve=True)

    @admin.action(description="Refuse selected pending joins")
    def refuse_joins(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        decide_joins(request, queryset, approve=False)


def decide_joins(request: HttpRequest, nodes: QuerySet[Node] | list[Node], *, approve: bool) -> int:
    """Decide each join through node_join_decide (which audits); a node whose project the user does
    not coordinate is refused with an error message and left as it is. Returns how many were decided."""
    verb = "approved" if approve else "refused"
    decided = 0
    for node in nodes:
        if not permissions.coordinates(request.user, node.project):
            messages.error(
                request, f"{node.external_id}: only the coordinators of {node.project.slug} decide its joins"
            )
            services.audit_record(
                actor=request.user,
                action="project.join_decide",
                outcome="denied",
                target=f"{node.external_id} {JoinStatus.APPROVED if approve else JoinStatus.REFUSED}",
                remote_addr=request.META.get("REMOTE_ADDR", ""),
                via="admin",
            )
            continue
        try:
            services.node_join_decide(node=node, approve=approve, actor=request.user, via="admin")
        except ApplicationError as exc:
            messages.error(request, f"{node.external_id}: {exc.message}")
        else:
            decided += 1
    if decided:
        messages.success(request, f"{decided} join{'s' if decided != 1 else ''} {verb}")
    return decided


# ----------------------------------------------------------------- grants, tokens, people, audit
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
        obj.created_secret = secret  # type: ignore[attr-defined]  # for response_add, on this instance only

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        """The new secret in this response's body only: never a message (Django keeps those in a signed but
        unencrypted cookie), a redirect, the session or a cache."""
        secret = getattr(obj, "created_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.model._meta,
            "token": obj,
            "secret": secret,
        }
        response = TemplateResponse(request, "admin/accounts/apitoken/created.html", context)
        add_never_cache_headers(response)
        return response

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
