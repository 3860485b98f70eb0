"""`/api/client/*`: anyone signed in lists and views projects and joins them; the dashboard needs a standing.

A project's summary and detail hold no per-site data. Its runs' logs are shown only to those who
may read them (accounts.permissions.can_view_run: staff and the project's members); a participant's
dashboard holds only its own nodes' sessions.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import permissions
from accounts.models import JoinStatus
from accounts.services.people import person_of
from accounts.services.projects import project_join
from core.errors import Forbidden, NotFound
from core.fields import StrictChar, StrictSerializer
from core.throttling import ControlRateThrottle
from portal import params, selectors
from portal.apis.base import PROJECT_ID_PARAMETER, PortalApiView, documented
from portal.serializers import (
    dashboard_output,
    node_output,
    project_detail_output,
    project_output,
    project_summary_output,
)


class ClientProjectsApi(PortalApiView):
    @documented(
        ok={200: "ProjectSummary[]: every project, newest first"},
        errors=(),
        array=True,
        operation_id="client_projects_list",
    )
    def get(self, request: Request) -> Response:
        user = request.user
        staff = permissions.is_staff(user)
        standings = {} if staff else permissions.standings(user)
        projects = selectors.projects_newest_first()
        stats = selectors.project_stats(project_ids=[p.pk for p in projects])
        return Response([project_summary_output(p, stats[p.pk], with_log=staff or p.pk in standings) for p in projects])


class ClientProjectApi(PortalApiView):
    @documented(
        ok={200: "ProjectDetailResponse: {project, stats}"}, errors=(404,), operation_id="client_project_retrieve"
    )
    def get(self, request: Request, project_id: UUID) -> Response:
        # Every project may be browsed (its name and counts; its runs' results only with a standing).
        project = selectors.project_get(project_id=project_id, projects=permissions.EVERY_PROJECT)
        if project is None:
            raise NotFound(f"project {project_id} not found", field="project_id")
        stats = selectors.project_stats(project_ids=[project.pk])[project.pk]
        with_log = permissions.can_view_project(request.user, project)
        return Response(project_detail_output(project, stats, with_log=with_log))


class ClientJoinApi(PortalApiView):
    """Join as a participant: 201 registered, 202 waiting for a coordinator's approval, 200 already registered."""

    post_action = "project.join"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "PortalJoinProjectInput"

        display_name = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=200)
        external_id = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=200)

    @documented(
        ok={
            200: "JoinProjectResponse, already_registered: the caller's node, as it was",
            201: "JoinProjectResponse: a new participant node",
            202: "JoinProjectResponse: the join waits for a coordinator's approval (node.join_status pending)",
        },
        errors=(400, 404, 409, 429),
        request=InputSerializer,
    )
    def post(self, request: Request, project_id: UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = selectors.project_get(project_id=project_id, projects=permissions.EVERY_PROJECT)  # any may be joined
        if project is None:
            raise NotFound(f"project {project_id} not found", field="project_id")
        person = person_of(request.user)
        if person is None:
            raise Forbidden("your account has no person record here; sign in again")
        node, already = project_join(
            project=project, person=person, actor=request.user, via="api", **data.validated_data
        )
        if node.join_status == JoinStatus.REFUSED:
            raise Forbidden("the project's coordinators refused this join")
        code = 202 if node.join_status == JoinStatus.PENDING else 200 if already else 201
        body = {"project": project_output(project), "node": node_output(node), "already_registered": already}
        return Response(body, status=code)


class ClientDashboardApi(PortalApiView):
    @documented(ok={200: "DashboardData"}, errors=(400, 404), parameters=[PROJECT_ID_PARAMETER])
    def get(self, request: Request) -> Response:
        project_id = params.project_id(request.query_params)
        # A project that may be browsed but not seen is refused (403: join it first), not hidden.
        project = selectors.project_get(project_id=project_id, projects=permissions.EVERY_PROJECT)
        if project is None:
            raise NotFound(f"project {project_id} not found", field="projectId")
        if not permissions.can_view_project(request.user, project):
            raise Forbidden("only the project's coordinators and participants may see its dashboard")
        # None: every node's sessions (coordinators, staff); a participant sees only its own nodes' sessions.
        node_ids = permissions.visible_node_ids(request.user, project)
        return Response(
            dashboard_output(
                project=project,
                nodes=selectors.project_nodes(project=project),
                sessions=selectors.project_sessions(project=project, node_ids=node_ids),
                active_run=selectors.run_active(project=project),
                recent_runs=selectors.runs_recent(project=project),
            )
        )


class SignupApi(APIView):
    """The dashboard's register page posts here (`/api/auth/signup`, its own route on Supabase).

    FedML creates accounts only through its administrators (`manage.py user_create`, the admin) or
    Supabase itself; the page shows `error.message`, so it says so instead of failing obscurely.
    """

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        message = "Sign-up is not available here: ask your FedML administrator for an account."
        return Response({"detail": message, "field": None, "data": None, "error": {"message": message}}, status=403)
