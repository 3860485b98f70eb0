"""Admin pages that start and stop Flower processes through the same services as the API."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from accounts import services as accounts_services
from accounts.models import Node, Project
from accounts.services import audit_record
from core.errors import ApplicationError
from orchestration import services, waits
from orchestration.states import RunStatus


def split_args(value: str) -> list[str]:
    # shlex only splits the text into argv items (quotes group words); nothing is ever run by a shell.
    try:
        return shlex.split(value or "")
    except ValueError as exc:
        raise forms.ValidationError(f"extra arguments: {exc}") from None


class SuperlinkStartForm(forms.Form):
    listen_address = forms.CharField(
        required=False,
        help_text="host:port in FEDML_SUPERLINK_PORT_RANGE (default: FEDML_SUPERLINK_ADDRESS for the default "
        "project, the first free port of the range for others)",
    )
    insecure = forms.BooleanField(required=False, initial=True, help_text="Without TLS (development only)")
    certificates_path = forms.CharField(required=False, help_text="Directory inside the certificates directory")
    extra_args = forms.CharField(required=False, help_text="Allowlisted Flower flags, e.g. --isolation subprocess")

    def clean_extra_args(self) -> list[str]:
        return split_args(self.cleaned_data["extra_args"])


class RunStartForm(forms.Form):
    federation_name = forms.CharField(initial="production")
    label = forms.CharField(required=False)
    num_server_rounds = forms.IntegerField(required=False, min_value=1, max_value=100000)
    extra_args = forms.CharField(required=False, help_text='e.g. --run-config "local-epochs=2"')

    def clean_extra_args(self) -> list[str]:
        args = split_args(self.cleaned_data["extra_args"])
        return args


class ConfirmForm(forms.Form):
    pass


def control_view(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    form_class: type[forms.Form],
    action: Callable[[dict[str, Any]], str],
) -> HttpResponse:
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    form = form_class(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            summary = action(form.cleaned_data)
        except ApplicationError as exc:
            field = f"{exc.field}: " if exc.field and not exc.message.startswith(exc.field) else ""
            messages.error(request, f"{title}: {field}{exc.message}")
            _audit(request, title, "error", f"{field}{exc.message}")
        else:
            messages.success(request, summary)
            _audit(request, title, "ok", summary)
            return HttpResponseRedirect("../")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "admin/orchestration/control_form.html", context)


def _audit(request: HttpRequest, title: str, outcome: str, detail: str) -> None:
    audit_record(
        actor=request.user,
        action=title.lower().replace(" ", ".")[:60],
        outcome=outcome,
        target=request.path,
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        via="admin",
        detail={"detail": detail[:500]},
    )


def start_superlink(data: dict[str, Any], *, node: Node | None = None) -> str:
    """The default project's SuperLink, or `node`'s (a project's control page)."""
    session = services.superlink_request_start(
        node=node or accounts_services.coordinator_node_ensure(),
        insecure=data["insecure"],
        certificates_path=data["certificates_path"] or None,
        listen_address=data["listen_address"] or None,
        extra_args=data["extra_args"],
    )
    session = waits.session_wait_spawned(session_id=session.id)
    return f"SuperLink {session.status} (pid {session.pid})"


def stop_superlink(data: dict[str, Any], *, node: Node | None = None) -> str:
    session = services.superlink_request_stop(node=node or accounts_services.coordinator_node_ensure())
    return f"Stop requested for SuperLink session {session.id}"


def start_run(data: dict[str, Any], *, project: Project | None = None) -> str:
    extra = list(data["extra_args"])
    if data.get("num_server_rounds"):
        extra += ["--run-config", f"num-server-rounds={data['num_server_rounds']}"]
    run = services.run_request_start(
        project=project or accounts_services.project_ensure_default(),
        federation_name=data["federation_name"],
        extra_args=extra,
        label=data["label"],
    )
    run = waits.run_wait_spawned(run_id=run.id)
    if run.pid is None and run.status == RunStatus.STARTING:
        return f"Run {run.id} starting: {run.status_detail or 'waiting for the SuperLink'}"
    return f"Run {run.id} {run.status} (pid {run.pid})"


def stop_run(data: dict[str, Any], *, project: Project | None = None) -> str:
    run = services.run_request_stop(project=project or accounts_services.project_ensure_default())
    return f"Stop requested for run {run.id}"
