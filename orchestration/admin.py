"""Admin: everything registered, status fields read-only; actions call the same services as the API.

Coordinators see their projects' sessions and runs without Django model permissions
(CoordinatedProjectsMixin); projects get their control page (admin_projects)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from accounts.admin import CoordinatedProjectsMixin
from accounts.models import Project
from core.errors import ApplicationError
from orchestration import admin_controls, admin_projects, services
from orchestration.models import FederatedRun, LogLine, NodeSession, RoundMetric, SupervisorHeartbeat
from orchestration.runtime_config import superlink_config, supernode_config
from orchestration.states import RunStatus, SessionKind

SESSION_STATUS_FIELDS = (
    "kind",
    "status",
    "pid",
    "started_at",
    "ended_at",
    "exit_code",
    "signal",
    "status_detail",
    "stop_requested_at",
    "supervisor_id",
    "log_path",
    "log_stream",
    "runtime_config",
    "created_at",
)


def run_action(request: HttpRequest, action, label: str) -> None:  # noqa: ANN001 - a service callable
    try:
        action()
    except ApplicationError as exc:
        messages.error(request, f"{label}: {exc.message}")
    else:
        messages.success(request, f"{label}: requested")


def control_url(model_admin: admin.ModelAdmin, route: str, title: str, form_class: type, action: object) -> URLPattern:
    def view(request: HttpRequest) -> HttpResponse:
        return admin_controls.control_view(model_admin, request, title=title, form_class=form_class, action=action)

    return path(f"{route}/", model_admin.admin_site.admin_view(view), name=f"orchestration_{route.replace('-', '_')}")


@admin.register(NodeSession)
class NodeSessionAdmin(CoordinatedProjectsMixin, admin.ModelAdmin):
    project_lookup = "node__project"
    list_display = ("id", "node", "kind", "status", "transport", "pid", "started_at", "ended_at", "exit_code", "signal")
    # RelatedOnly: a coordinator's filter offers its own projects' nodes, not everyone's.
    list_filter = ("kind", "status", ("node", admin.RelatedOnlyFieldListFilter))
    readonly_fields = ("id", "node", *SESSION_STATUS_FIELDS)
    actions = ["stop_sessions"]
    # (route, title, form, action). participants/admin.py adds the SuperNode's start: apps above
    # orchestration extend its admin rather than orchestration importing them.
    controls: tuple[tuple[str, str, type, Any], ...] = (
        ("start-superlink", "Start SuperLink", admin_controls.SuperlinkStartForm, admin_controls.start_superlink),
        ("stop-superlink", "Stop SuperLink", admin_controls.ConfirmForm, admin_controls.stop_superlink),
    )

    def get_urls(self) -> list[URLPattern]:
        return [control_url(self, *control) for control in self.controls] + super().get_urls()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions are started through the services (API, commands, actions)

    @admin.display(description="transport")
    def transport(self, obj: NodeSession) -> str:
        # Insecure mode is for local development only: say so wherever a session is listed.
        config = superlink_config(obj) if obj.kind == SessionKind.SUPERLINK else supernode_config(obj)
        return "INSECURE (no TLS)" if config.insecure else "TLS"

    @admin.action(description="Stop selected sessions")
    def stop_sessions(self, request: HttpRequest, queryset: QuerySet[NodeSession]) -> None:
        for session in queryset:
            run_action(
                request, lambda s=session: services.session_request_stop(session=s), f"stop {session.kind} {session.id}"
            )


@admin.register(FederatedRun)
class FederatedRunAdmin(CoordinatedProjectsMixin, admin.ModelAdmin):
    list_display = ("id", "label", "project", "status", "rounds", "flower_run_id", "started_at", "ended_at")
    list_filter = ("status", ("project", admin.RelatedOnlyFieldListFilter))
    search_fields = ("label", "flower_run_id")
    readonly_fields = (
        "id",
        "project",
        "status",
        "coordinator_session",
        "flower_run_id",
        "federation_name",
        "pid",
        "exit_code",
        "signal",
        "started_at",
        "ended_at",
        "status_detail",
        "stop_requested_at",
        "supervisor_id",
        "log_path",
        "log_stream",
        "metrics",
        "config",
        "created_at",
    )
    actions = ["stop_runs"]

    def get_urls(self) -> list[URLPattern]:
        controls = [
            ("start-run", "Start run", admin_controls.RunStartForm, admin_controls.start_run),
            ("stop-run", "Stop active run", admin_controls.ConfirmForm, admin_controls.stop_run),
        ]
        return [control_url(self, *control) for control in controls] + super().get_urls()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="rounds")
    def rounds(self, obj: FederatedRun) -> str:
        return admin_projects.rounds_text(obj)

    @admin.action(description="Stop selected runs")
    def stop_runs(self, request: HttpRequest, queryset: QuerySet[FederatedRun]) -> None:
        for run in queryset.filter(status__in=(RunStatus.REQUESTED, RunStatus.STARTING, RunStatus.RUNNING)):
            run_action(request, lambda r=run: services.run_request_stop(project=r.project), f"stop run {run.id}")


@admin.register(LogLine)
class LogLineAdmin(admin.ModelAdmin):
    list_display = ("id", "session", "run", "seq", "stream", "source", "ts", "text")
    list_filter = ("stream",)
    search_fields = ("text",)
    list_select_related = ("session", "run")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LogLine | None = None) -> bool:
        return False


@admin.register(RoundMetric)
class RoundMetricAdmin(admin.ModelAdmin):
    list_display = ("run", "round", "phase", "aggregated", "created_at")
    list_filter = ("phase",)
    readonly_fields = ("run", "round", "phase", "aggregated", "per_node", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SupervisorHeartbeat)
class SupervisorHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("id", "hostname", "pid", "started_at", "beat_at", "stopped_at")
    readonly_fields = ("id", "hostname", "pid", "started_at", "beat_at", "stopped_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Projects: the same admin plus each project's control page; the index opens with the projects.
admin.site.unregister(Project)
admin.site.register(Project, admin_projects.ProjectControlAdmin)
admin_projects.install_index(admin.site)
