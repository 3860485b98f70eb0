"""The admin's projects: the index's Projects panel and each project's control page.

As on the dashboard, a coordinator's admin opens with its projects; each project's control page
starts and stops its SuperLink and runs, decides pending joins, edits its run-config defaults and
lists its nodes and runs. Every change goes through the services (accounts' and orchestration's),
exactly as the API's do; this module only reads models. Only superusers and the project's
coordinators (accounts.admin.coordinates) may open a control page: anyone else gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from accounts import permissions
from accounts import services as accounts_services
from accounts.admin import ProjectAdmin, decide_joins
from accounts.models import JoinStatus, Node, NodeRole, Project
from core.errors import ApplicationError, NotFound
from orchestration import admin_controls, flower, scoping, services
from orchestration.models import SESSION_LIVE_STATUSES, FederatedRun, NodeSession, SessionKind
from orchestration.services.runs import PROJECT_RUN_CONFIG

PANEL_PROJECTS = 50  # the index lists this many, newest first; the changelist has them all
RECENT_RUNS = 20
NODES_SHOWN = 200
FIRST_MODELS = ("Project", "Node", "FederatedRun", "NodeSession")  # each app's list opens with these


# ----------------------------------------------------------------- reads
def rounds_text(run: FederatedRun | None) -> str:
    """ "round i of N" from the rounds recorded so far (run.metrics) and the rounds asked for."""
    if run is None:
        return ""
    metrics = run.metrics or {}
    total = metrics.get("num_rounds") or (run.config or {}).get("num_rounds")
    last = metrics.get("last_round") or 0
    return f"round {last} of {total}" if total else (f"round {last}" if last else "")


@dataclass
class ProjectState:
    project: Project
    superlink: NodeSession | None = None
    run: FederatedRun | None = None
    online: int = 0  # nodes with a live SuperNode session
    pending: int = 0  # joins waiting for a coordinator

    @property
    def superlink_address(self) -> str:
        config = self.superlink.runtime_config if self.superlink else {}
        return f"{config['host']}:{config['port']}" if config.get("host") and config.get("port") else ""

    @property
    def rounds(self) -> str:
        return rounds_text(self.run)


def project_states(projects: list[Project]) -> list[ProjectState]:
    """Each project's SuperLink, live run, nodes online and pending joins: four queries however many projects."""
    states = {project.pk: ProjectState(project) for project in projects}
    if not states:
        return []
    live = NodeSession.objects.filter(node__project_id__in=states, status__in=SESSION_LIVE_STATUSES)
    for session in live.filter(kind=SessionKind.SUPERLINK).select_related("node").order_by("created_at"):
        states[session.node.project_id].superlink = session  # the newest wins (one by constraint, per node)
    online = live.filter(kind=SessionKind.SUPERNODE).values("node__project_id").annotate(n=Count("node", distinct=True))
    for row in online.order_by():
        states[row["node__project_id"]].online = row["n"]
    for run in FederatedRun.objects.live().filter(project_id__in=states).order_by("created_at"):
        states[run.project_id].run = run
    pending = Node.objects.filter(project_id__in=states, role=NodeRole.PARTICIPANT, join_status=JoinStatus.PENDING)
    for row in pending.values("project_id").annotate(n=Count("pk")).order_by():
        states[row["project_id"]].pending = row["n"]
    return list(states.values())


def _toml_text(value: Any) -> str:
    """A run-config value as `--run-config` writes it (the inverse of flower.run_config_value)."""
    try:
        return flower.toml_scalar(value)
    except ValueError:  # stored before values were checked: shown as it is, refused if saved again
        return repr(value)


def _app_run_config_keys() -> list[str]:
    try:
        app_config = flower.read_app_config(settings.FLOWER_APP_DIR)
    except (OSError, ValueError):  # no app installed here: the service says so on save
        return []
    return sorted(set(app_config) - flower.RESERVED_RUN_CONFIG_KEYS)


# ----------------------------------------------------------------- the index
def install_index(site: admin.AdminSite) -> None:
    """Projects first: the index opens with the projects the user coordinates (a superuser: every
    project), each with its state; each app's model list opens with projects, nodes, runs, sessions.

    Wraps the default site's own methods (set before the URLconf reads them) rather than replacing
    the site, which would need a custom AdminConfig in INSTALLED_APPS."""
    django_index = site.index
    django_app_list = site.get_app_list

    def index(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        ids = permissions.coordinated_project_ids(request.user)
        projects = Project.objects.order_by("-created_at", "-id")
        if ids is not None:
            projects = projects.filter(pk__in=ids)
        shown = list(projects[: PANEL_PROJECTS + 1])
        context = {
            "fedml_projects": project_states(shown[:PANEL_PROJECTS]),
            "fedml_projects_more": len(shown) > PANEL_PROJECTS,
            "fedml_can_add_project": permissions.is_staff(request.user),
        }
        return django_index(request, {**context, **(extra_context or {})})

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = django_app_list(request, app_label)
        for app in apps:
            app["models"].sort(
                key=lambda m: (
                    FIRST_MODELS.index(m["object_name"]) if m["object_name"] in FIRST_MODELS else len(FIRST_MODELS)
                )
            )
        return apps

    site.index = index  # type: ignore[method-assign]
    site.get_app_list = get_app_list  # type: ignore[method-assign]


# ----------------------------------------------------------------- the control page's actions
class RunConfigForm(forms.Form):
    values = forms.CharField(
        required=False,
        label="Defaults",
        widget=forms.TextInput(attrs={"size": 80}),
        help_text='key=value pairs as --run-config takes them (quote strings: strategy="fedprox"); empty clears them',
    )

    def clean_values(self) -> dict[str, str]:
        text = self.cleaned_data["values"].strip()
        if not text:
            return {}
        try:
            return flower.parse_run_config(text, flag="run_config", field="run_config")
        except flower.FlowerArgError as exc:
            raise forms.ValidationError(exc.message) from None


class JoinForm(forms.Form):
    node = forms.UUIDField()


def _coordinator_node(request: HttpRequest, project: Project) -> Node:
    scope = scoping.coordinator_scope(user=request.user, project_id=project.pk, control=True)
    assert scope is not None  # a named project always has a scope (or raises)
    return scope.node


def start_superlink(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    return admin_controls.start_superlink(data, node=_coordinator_node(request, project))


def stop_superlink(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    return admin_controls.stop_superlink(data, node=_coordinator_node(request, project))


def start_run(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    return admin_controls.start_run(data, project=project)


def stop_run(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    return admin_controls.stop_run(data, project=project)


def set_run_config(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    typed = services.project_run_config_set(project=project, values=data["values"], actor=request.user, via="admin")
    if not typed:
        return "Run-config defaults cleared: the app's own apply"
    return "Run-config defaults saved: " + " ".join(f"{k}={_toml_text(v)}" for k, v in sorted(typed.items()))


def _decide(approve: bool) -> Callable[[HttpRequest, Project, dict[str, Any]], str]:
    def decide(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
        node = Node.objects.select_related("project").filter(project=project, pk=data["node"]).first()
        if node is None:
            raise NotFound(f"node {data['node']} not found in this project", field="node")
        decide_joins(request, [node], approve=approve)  # says how it went itself
        return ""

    return decide


@dataclass(frozen=True)
class Action:
    title: str
    form: type[forms.Form]
    run: Callable[[HttpRequest, Project, dict[str, Any]], str]
    audit: str  # the audit action recorded here; "" where the service audits itself


ACTIONS = {
    "start_superlink": Action("Start SuperLink", admin_controls.SuperlinkStartForm, start_superlink, "superlink.start"),
    "stop_superlink": Action("Stop SuperLink", admin_controls.ConfirmForm, stop_superlink, "superlink.stop"),
    "start_run": Action("Start run", admin_controls.RunStartForm, start_run, "run.start"),
    "stop_run": Action("Stop run", admin_controls.ConfirmForm, stop_run, "run.stop"),
    "run_config": Action("Run-config defaults", RunConfigForm, set_run_config, ""),
    "approve_join": Action("Approve join", JoinForm, _decide(True), ""),
    "refuse_join": Action("Refuse join", JoinForm, _decide(False), ""),
}


def _error_text(exc: ApplicationError) -> str:
    field = f"{exc.field}: " if exc.field and not exc.message.startswith(exc.field) else ""
    return f"{field}{exc.message}"


def _form_errors(form: forms.Form) -> str:
    return "; ".join(
        f"{name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors) for name, errors in form.errors.items()
    )


def _audit(request: HttpRequest, project: Project, action: str, outcome: str, detail: str) -> None:
    accounts_services.audit_record(
        actor=request.user,
        action=action,
        outcome=outcome,
        target=project.slug,
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        via="admin",
        detail={"detail": detail[:500]},
    )


# ----------------------------------------------------------------- the admin
def control_url(project: Project) -> str:
    return reverse("admin:accounts_project_control", args=[project.pk])


def runs_url(project: Project) -> str:
    return reverse("admin:orchestration_federatedrun_changelist") + f"?project__id__exact={project.pk}"


class ProjectControlAdmin(ProjectAdmin):
    """ProjectAdmin with each project's control page, /admin/accounts/project/<id>/control/."""

    list_display = (*ProjectAdmin.list_display, "links")

    def get_urls(self) -> list[URLPattern]:
        # Before Django's own: its `<path:object_id>/` would take "<id>/control/" for an object id.
        view = self.admin_site.admin_view(self.control_view)
        return [path("<uuid:object_id>/control/", view, name="accounts_project_control"), *super().get_urls()]

    @admin.display(description="")
    def links(self, obj: Project) -> str:
        return format_html('<a href="{}">control</a> · <a href="{}">runs</a>', control_url(obj), runs_url(obj))

    def created_url(self, project: Project) -> str:
        return control_url(project)

    def control_view(self, request: HttpRequest, object_id: UUID) -> HttpResponse:
        project = Project.objects.select_related("created_by").filter(pk=object_id).first()
        if project is None:
            raise Http404(f"project {object_id} not found")
        if not permissions.coordinates(request.user, project):
            if request.method == "POST":
                _audit(request, project, "project.control", "denied", request.POST.get("action", "")[:60])
            raise PermissionDenied
        bound: dict[str, forms.Form] = {}
        if request.method == "POST":
            name = request.POST.get("action", "")
            action = ACTIONS.get(name)
            if action is None:
                messages.error(request, f"unknown action {name[:60]!r}")
                return HttpResponseRedirect(request.path)
            form = action.form(request.POST, prefix=name)
            if self._perform(request, project, action, form):
                return HttpResponseRedirect(request.path)
            bound[name] = form  # shown again with what was typed
        return TemplateResponse(request, "admin/accounts/project/control.html", self._context(request, project, bound))

    def _perform(self, request: HttpRequest, project: Project, action: Action, form: forms.Form) -> bool:
        if not form.is_valid():
            messages.error(request, f"{action.title}: {_form_errors(form)}")
            return False
        try:
            summary = action.run(request, project, form.cleaned_data)
        except ApplicationError as exc:
            messages.error(request, f"{action.title}: {_error_text(exc)}")
            _audit(request, project, action.audit or "project.control", "error", f"{action.title}: {_error_text(exc)}")
            return False
        if summary:
            messages.success(request, summary)
        if action.audit:
            _audit(request, project, action.audit, "ok", summary)
        return True

    def _context(self, request: HttpRequest, project: Project, bound: dict[str, forms.Form]) -> dict[str, Any]:
        state = project_states([project])[0]
        nodes = list(
            Node.objects.approved()
            .filter(project=project)
            .select_related("user")
            .order_by("role", "created_at")[:NODES_SHOWN]
        )
        sessions: dict[Any, list[NodeSession]] = {}
        for session in NodeSession.objects.filter(node__project=project, status__in=SESSION_LIVE_STATUSES).order_by(
            "created_at"
        ):
            sessions.setdefault(session.node_id, []).append(session)
        pending = Node.objects.filter(project=project, role=NodeRole.PARTICIPANT, join_status=JoinStatus.PENDING)
        runs = list(FederatedRun.objects.filter(project=project).order_by("-created_at")[:RECENT_RUNS])
        defaults = (project.config or {}).get(PROJECT_RUN_CONFIG) or {}
        defaults_text = " ".join(f"{k}={_toml_text(v)}" for k, v in sorted(defaults.items()))

        def form(name: str, **initial: Any) -> forms.Form:
            return bound.get(name) or ACTIONS[name].form(prefix=name, initial=initial or None)

        return {
            **self.admin_site.each_context(request),
            "title": f"{project.name}: control",
            "subtitle": project.slug,
            "opts": self.model._meta,
            "original": project,
            "project": project,
            "state": state,
            "nodes": [(node, sessions.get(node.pk, [])) for node in nodes],
            "pending": list(pending.select_related("user").order_by("created_at")[:NODES_SHOWN]),
            "runs": [(run, rounds_text(run)) for run in runs],
            "runs_url": runs_url(project),
            "run_config": sorted(defaults.items()),
            "run_config_keys": _app_run_config_keys(),
            "superlink_form": form("start_superlink"),
            "run_form": form("start_run"),
            "run_config_form": form("run_config", values=defaults_text),
        }
