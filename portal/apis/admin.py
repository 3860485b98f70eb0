"""`/api/admin/*`: a project's coordinators (owners of its coordinator nodes, explicit grants) and staff.

A project the caller does not coordinate answers 404, as one that does not exist: it is not revealed.
"""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import permissions
from accounts.models import JoinPolicy
from accounts.services.people import person_of
from accounts.services.projects import node_join_decide, project_create
from core.errors import Forbidden, NotFound
from core.fields import StrictChar, StrictSerializer
from core.throttling import ControlRateThrottle
from portal import params, selectors
from portal.apis.base import PROJECT_ID_PARAMETER, PortalApiView, coordinated_project, documented
from portal.serializers import (
    dashboard_output,
    node_output,
    project_detail_output,
    project_output,
    project_summary_output,
    run_output,
    session_output,
    session_with_node_output,
)

RUNS_PARAMETERS = [
    OpenApiParameter("status", str, many=True, description="one or more run statuses (repeated or comma-separated)"),
    OpenApiParameter("search", str, description="label, federation name, Flower run id or run id prefix"),
    OpenApiParameter("limit", int, description="runs per page, 1-200 (25)"),
    OpenApiParameter("cursor", str, description="`nextCursor` of the previous page"),
]


class AdminProjectsApi(PortalApiView):
    post_action = "project.create"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "PortalCreateProjectInput"

        name = StrictChar(max_length=200, allow_blank=True)
        slug = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=200)
        description = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=5000)
        coordinator_display_name = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=200)
        coordinator_external_id = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=200)
        join_policy = StrictChar(required=False, default=JoinPolicy.OPEN, max_length=20)

    @documented(
        ok={200: "ProjectSummary[]: the projects the caller coordinates (staff: all)"},
        errors=(),
        array=True,
        operation_id="admin_projects_list",
    )
    def get(self, request: Request) -> Response:
        user = request.user
        if permissions.is_staff(user):
            projects = selectors.projects_newest_first()
        else:
            standings = permissions.standings(user)
            coordinated = {pk for pk, standing in standings.items() if standing.coordinator}
            projects = selectors.projects_newest_first(only_ids=coordinated)
        stats = selectors.project_stats(project_ids=[p.pk for p in projects])
        return Response([project_summary_output(p, stats[p.pk], with_log=True) for p in projects])

    @documented(
        ok={201: "CreateProjectResponse: {project, coordinator_node}"}, errors=(400, 409, 429), request=InputSerializer
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        owner = person_of(request.user)
        if owner is None:
            raise Forbidden("your account has no person record here; sign in again")
        project, node = project_create(owner=owner, actor=request.user, via="api", **data.validated_data)
        return Response({"project": project_output(project), "coordinator_node": node_output(node)}, status=201)


class AdminProjectApi(PortalApiView):
    @documented(
        ok={200: "ProjectDetailResponse: {project, stats}"}, errors=(404,), operation_id="admin_project_retrieve"
    )
    def get(self, request: Request, project_id: UUID) -> Response:
        project = coordinated_project(request, project_id)
        stats = selectors.project_stats(project_ids=[project.pk])[project.pk]
        return Response(project_detail_output(project, stats, with_log=True))


class AdminProjectNodesApi(PortalApiView):
    @documented(ok={200: "ProjectNodesResponse: {nodes, sessions}"}, errors=(404,))
    def get(self, request: Request, project_id: UUID) -> Response:
        project = coordinated_project(request, project_id)
        nodes = selectors.project_nodes(project=project)
        sessions = selectors.project_sessions(project=project)
        return Response({"nodes": [node_output(n) for n in nodes], "sessions": [session_output(s) for s in sessions]})


class AdminProjectRunsApi(PortalApiView):
    @documented(
        ok={200: "ProjectRunsResponse: {runs, nextCursor}, newest first"},
        errors=(400, 404),
        parameters=RUNS_PARAMETERS,
        operation_id="admin_project_runs_list",
    )
    def get(self, request: Request, project_id: UUID) -> Response:
        query = request.query_params
        statuses = params.run_statuses(query)
        search = params.search(query)
        limit = params.limit(query)
        after = params.cursor(query)
        project = coordinated_project(request, project_id)
        runs, more = selectors.runs_page(project=project, statuses=statuses, search=search, limit=limit, after=after)
        return Response(
            {"runs": [run_output(r) for r in runs], "nextCursor": params.cursor_for(runs[-1]) if more else None}
        )


class AdminRunApi(PortalApiView):
    @documented(ok={200: "RunDetailResponse: {run, coordinatorSession, participantSessions}"}, errors=(404,))
    def get(self, request: Request, project_id: UUID, run_id: UUID) -> Response:
        project = coordinated_project(request, project_id)
        run = selectors.run_get(project=project, run_id=run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found", field="run_id")
        coordinator, participants = selectors.run_sessions(run=run)
        return Response(
            {
                "run": run_output(run),
                "coordinatorSession": None if coordinator is None else session_with_node_output(coordinator),
                "participantSessions": [session_with_node_output(s) for s in participants],
            }
        )


class AdminDashboardApi(PortalApiView):
    @documented(ok={200: "DashboardData"}, errors=(400, 404), parameters=[PROJECT_ID_PARAMETER])
    def get(self, request: Request) -> Response:
        project = coordinated_project(request, params.project_id(request.query_params), field="projectId")
        return Response(
            dashboard_output(
                project=project,
                nodes=selectors.project_nodes(project=project),
                sessions=selectors.project_sessions(project=project),
                active_run=selectors.run_active(project=project),
                recent_runs=selectors.runs_recent(project=project),
            )
        )


class AdminJoinsApi(PortalApiView):
    @documented(
        ok={200: "{joins: Node[]}: participant joins in these statuses (pending by default), oldest first"},
        errors=(400, 404),
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, many=True, description="pending, approved, refused")],
    )
    def get(self, request: Request, project_id: UUID) -> Response:
        statuses = params.join_statuses(request.query_params)
        project = coordinated_project(request, project_id)
        return Response({"joins": [node_output(n) for n in selectors.joins(project=project, statuses=statuses)]})


class AdminJoinDecideApi(PortalApiView):
    """Approve (`approve=True`) or refuse a pending join; deciding it again the same way changes nothing."""

    post_action = "project.join_decide"
    throttle_classes = [ControlRateThrottle]
    approve = True

    @documented(ok={200: "{node: Node}"}, errors=(400, 404, 409, 429), request=None)
    def post(self, request: Request, project_id: UUID, node_id: UUID) -> Response:
        project = coordinated_project(request, project_id)
        node = selectors.node_get(project=project, node_id=node_id)
        if node is None:
            raise NotFound(f"node {node_id} not found", field="node_id")
        node = node_join_decide(node=node, approve=self.approve, actor=request.user, via="api")
        return Response({"node": node_output(node)})
