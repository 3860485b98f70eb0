"""Coordinator records API: a run with its rounds, log pages, and SuperNode keys. Every id is
looked up within what the caller may see: another project's run or node is "not found"."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import permissions as access
from accounts.drf import AuditedApiView
from core.errors import Forbidden
from core.fields import StrictChar, StrictSerializer, parse_count
from core.openapi import documented
from core.throttling import ControlRateThrottle
from orchestration import selectors, services, waits
from orchestration.models import EnrollmentStatus
from orchestration.serializers import enrollment_output, log_lines_output, round_output, run_output

LOG_PARAMETERS = [
    OpenApiParameter("after", int, description="lines with seq greater than this"),
    OpenApiParameter("before", int, description="the newest `limit` lines with seq less than this"),
    OpenApiParameter("limit", int, description="at most this many lines (1-5000)"),
]


def _controlled_node(request: Request, node_id: str) -> Any:
    """A node of a project the caller coordinates; None if the caller may not even see it."""
    node = selectors.node_get(node_id=node_id, projects=access.visible_project_ids(request.user))
    if node is None:
        return None
    if not access.can_control_federation(request.user, node.project):
        raise Forbidden("only the project's coordinators may control the SuperLink, runs and enrollments")
    return node


class RunDetailApi(AuditedApiView):
    @documented(ok={200: "the run with its per-round metrics"}, errors=(404,))
    def get(self, request: Request, run_id: str) -> Response:
        run = selectors.run_get(run_id=run_id, projects=access.visible_project_ids(request.user))
        if run is None:
            return Response({"detail": f"run {run_id} not found", "field": "run_id"}, status=404)
        payload = run_output(run)
        # Participants see aggregated metrics only, never another node's.
        per_node = access.can_view_per_node_metrics(request.user, run.project)
        payload["rounds"] = [round_output(m, per_node=per_node) for m in selectors.round_metrics(run=run)]
        return Response(payload)


class LogLinesApi(AuditedApiView):
    """Log lines of a session or a run after (or before) a sequence number: the record itself.

    `after=N` pages forward; `before=N` pages backward (the newest `limit` lines below N),
    which the admin's log panel uses to load older lines on scroll. Subclasses say whose lines.
    """

    owner_kind = ""  # "session" | "run"

    def _owner(self, owner_id: Any, projects: access.ProjectScope) -> Any:
        raise NotImplementedError

    def _may_read(self, request: Request, owner: Any) -> bool:
        raise NotImplementedError

    def _lines(self, request: Request, owner_id: Any) -> Response:
        params = request.query_params
        after = parse_count(params.get("after", "0"), field="after")
        before = params.get("before")
        before_seq = parse_count(before, field="before") if before is not None else None
        limit = min(parse_count(params.get("limit", "1000"), field="limit", minimum=1), 5000)
        # Another project's records are "not found": their ids reveal nothing outside the project.
        owner = self._owner(owner_id, access.visible_project_ids(request.user))
        if owner is None:
            return Response({"detail": f"{self.owner_kind} {owner_id} not found", "field": "id"}, status=404)
        if not self._may_read(request, owner):
            self.permission_denied(request, message=f"you may not read this {self.owner_kind}'s log")
        owner_filter = {self.owner_kind: owner}
        if before_seq is not None:
            lines = selectors.log_lines_before(**owner_filter, before=before_seq, limit=limit)
        else:
            lines = selectors.log_lines_after(**owner_filter, after=after, limit=limit)
        return Response({"lines": log_lines_output(lines)})


class SessionLogLinesApi(LogLinesApi):
    owner_kind = "session"

    def _owner(self, owner_id: Any, projects: access.ProjectScope) -> Any:
        return selectors.session_get(session_id=owner_id, projects=projects)

    def _may_read(self, request: Request, owner: Any) -> bool:
        return access.can_view_session(request.user, owner)

    @documented(ok={200: "{lines: [...]}"}, errors=(400, 404), parameters=LOG_PARAMETERS)
    def get(self, request: Request, session_id: str) -> Response:
        return self._lines(request, session_id)


class RunLogLinesApi(LogLinesApi):
    owner_kind = "run"

    def _owner(self, owner_id: Any, projects: access.ProjectScope) -> Any:
        return selectors.run_get(run_id=owner_id, projects=projects)

    def _may_read(self, request: Request, owner: Any) -> bool:
        return access.can_view_run(request.user, owner)

    @documented(ok={200: "{lines: [...]}"}, errors=(400, 404), parameters=LOG_PARAMETERS)
    def get(self, request: Request, run_id: str) -> Response:
        return self._lines(request, run_id)


class NodeEnrollApi(AuditedApiView):
    """Register a participant node's SuperNode public key with the SuperLink (SuperNode auth)."""

    audit_action = "node.enroll"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "NodeEnrollInput"  # a unique OpenAPI component name

        public_key = StrictChar(max_length=2000)

    @documented(
        ok={201: "registered", 202: "not yet registered"},
        errors=(400, 404, 409, 429, 502, 503),
        request=InputSerializer,
    )
    def post(self, request: Request, node_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = _controlled_node(request, node_id)
        if node is None:
            return Response({"detail": f"node {node_id} not found", "field": "node_id"}, status=404)
        enrollment = services.node_enrollment_request(node=node, public_key=data.validated_data["public_key"])
        enrollment = waits.enrollment_wait(enrollment_id=enrollment.pk, timeout=settings.START_WAIT_SECONDS)
        code = {EnrollmentStatus.REGISTERED: 201, EnrollmentStatus.REQUESTED: 202}.get(enrollment.status, 502)
        return Response(enrollment_output(enrollment), status=code)


class NodeRevokeApi(AuditedApiView):
    """Unregister a node's key: its SuperNodes can no longer join the federation."""

    audit_action = "node.revoke"
    throttle_classes = [ControlRateThrottle]

    @documented(ok={200: "revoked", 202: "revocation pending"}, errors=(404, 409, 429, 503), request=None)
    def post(self, request: Request, node_id: str) -> Response:
        node = _controlled_node(request, node_id)
        if node is None:
            return Response({"detail": f"node {node_id} not found", "field": "node_id"}, status=404)
        enrollment = services.node_enrollment_revoke(node=node)
        enrollment = waits.enrollment_wait(enrollment_id=enrollment.pk, timeout=settings.START_WAIT_SECONDS)
        return Response(
            enrollment_output(enrollment), status=200 if enrollment.status == EnrollmentStatus.REVOKED else 202
        )
