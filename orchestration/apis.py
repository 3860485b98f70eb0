"""Coordinator HTTP API. Paths and JSON field names match the FastAPI service the dashboard uses."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import permissions as access
from accounts import services as accounts_services
from accounts.drf import AuditedApiView, FederationControl, ProjectMember
from core.fields import ExtraArgs, StrictBoolean, StrictChar, StrictSerializer, parse_count
from core.openapi import documented
from orchestration import selectors, services, waits
from orchestration.models import EnrollmentStatus, RunStatus, SessionStatus
from orchestration.runtime_config import superlink_config
from orchestration.serializers import (
    enrollment_output,
    iso,
    log_lines_output,
    round_output,
    run_info_output,
    run_output,
)

LOG_PARAMETERS = [
    OpenApiParameter("after", int, description="lines with seq greater than this"),
    OpenApiParameter("before", int, description="the newest `limit` lines with seq less than this"),
    OpenApiParameter("limit", int, description="at most this many lines (1-5000)"),
]


class CoordinatorHealthApi(AuditedApiView):
    permission_classes = [ProjectMember]

    @documented(ok={200: "coordinator state and supervisor liveness"}, errors=())
    def get(self, request: Request) -> Response:
        coordinator = accounts_services.coordinator_node_ensure()
        project = coordinator.project
        superlink = selectors.session_live_superlink(project=project)
        run = selectors.run_live(project=project)
        running = superlink is not None and superlink.status == SessionStatus.RUNNING
        return Response(
            {
                "status": "ok",
                "superlink_running": running,
                "superlink_status": superlink.status if superlink else None,
                "superlink_started_at": iso(superlink.started_at) if superlink else None,
                "superlink_pid": superlink.pid if superlink else None,
                "superlink_session_id": str(superlink.id) if superlink else None,
                "superlink_insecure": superlink_config(superlink).insecure if superlink else None,
                "run_active": run is not None,
                "run_info": None if run is None else run_info_output(run),
                "default_project_id": str(project.id),
                "active_project_id": str(project.id),
                "default_coordinator_node_id": str(coordinator.id),
                "active_coordinator_node_id": str(coordinator.id),
                **selectors.supervisor_status(),
            }
        )


class SuperlinkStartApi(AuditedApiView):
    permission_classes = [FederationControl]
    audit_action = "superlink.start"

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "SuperlinkStartInput"  # a unique OpenAPI component name

        insecure = StrictBoolean(required=False, default=True)
        certificates_path = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=500)
        listen_address = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=300)
        extra_args = ExtraArgs()

    @documented(
        ok={201: "started: status, pid, log_path, session_id"}, errors=(400, 409, 502, 503), request=InputSerializer
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = accounts_services.coordinator_node_ensure()
        session = services.superlink_request_start(node=node, **data.validated_data)
        session = waits.session_wait_spawned(session_id=session.id)
        # 502 only when the SuperLink failed to start (not when a stop overtook the answer).
        code = 502 if session.status in (SessionStatus.FAILED, SessionStatus.LOST) else 201
        return Response(
            {
                "status": "started" if session.status == SessionStatus.RUNNING else session.status,
                "pid": session.pid,
                "log_path": session.log_path or None,
                "session_id": str(session.id),
                "detail": session.status_detail or None,
            },
            status=code,
        )


class SuperlinkStopApi(AuditedApiView):
    permission_classes = [FederationControl]
    audit_action = "superlink.stop"

    @documented(ok={200: "stopped or stopping"}, errors=(409,), request=None)
    def post(self, request: Request) -> Response:
        node = accounts_services.coordinator_node_ensure()
        session = services.superlink_request_stop(node=node)
        session = waits.session_wait_ended(session_id=session.id, timeout=settings.START_WAIT_SECONDS)
        return Response(
            {
                "status": SessionStatus.STOPPED if not session.is_live else SessionStatus.STOPPING,
                "session_id": str(session.id),
                "pid": session.pid,
            }
        )


class RunStartApi(AuditedApiView):
    permission_classes = [FederationControl]
    audit_action = "run.start"

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "RunStartInput"  # a unique OpenAPI component name

        federation_name = StrictChar(required=False, default="production", max_length=64)
        stream = StrictBoolean(required=False, default=True)
        extra_args = ExtraArgs()
        label = StrictChar(required=False, default="", allow_blank=True, max_length=200)

    @documented(
        ok={
            201: "started: status, pid, log_path, run_id, session_id",
            202: "claimed by the supervisor, which starts `flwr run` once the SuperLink accepts connections",
        },
        errors=(400, 409, 502, 503),
        request=InputSerializer,
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = accounts_services.project_ensure_default()
        run = services.run_request_start(project=project, **data.validated_data)
        run = waits.run_wait_spawned(run_id=run.id)
        waiting = run.status == RunStatus.STARTING and run.pid is None
        if not waiting:
            # Flower's run id arrives on `flwr run`'s output a moment later; wait briefly for it.
            run = waits.run_wait_flower_id(run_id=run.id, timeout=settings.START_WAIT_SECONDS)
        # Only a run that failed is Flower failing to start; one already completed or stopped is not.
        ok = run.status != RunStatus.FAILED
        live = run.status in (RunStatus.STARTING, RunStatus.RUNNING)
        return Response(
            {
                "status": RunStatus.STARTING if waiting else "started" if live else run.status,
                "pid": run.pid,
                "log_path": run.log_path or None,
                "run_id": str(run.id),
                "flower_run_id": run.flower_run_id or None,
                "session_id": str(run.coordinator_session_id) if run.coordinator_session_id else None,
                "detail": run.status_detail or ("waiting for the SuperLink to accept connections" if waiting else None),
            },
            status=(202 if waiting else 201) if ok else 502,
        )


class RunStopApi(AuditedApiView):
    permission_classes = [FederationControl]
    audit_action = "run.stop"

    @documented(ok={200: "the run's status after the stop request"}, errors=(409,), request=None)
    def post(self, request: Request) -> Response:
        project = accounts_services.project_ensure_default()
        run = services.run_request_stop(project=project)
        run = waits.run_wait_ended(run_id=run.id, timeout=settings.START_WAIT_SECONDS)
        return Response({"status": run.status, "run_id": str(run.id), "flower_run_id": run.flower_run_id or None})


class RunActiveApi(AuditedApiView):
    permission_classes = [ProjectMember]

    @documented(ok={200: "{run: ... or null}"}, errors=())
    def get(self, request: Request) -> Response:
        project = accounts_services.project_ensure_default()
        run = selectors.run_live(project=project)
        return Response({"run": None if run is None else run_output(run)})


class RunDetailApi(AuditedApiView):
    permission_classes = [ProjectMember]

    @documented(ok={200: "the run with its per-round metrics"}, errors=(404,))
    def get(self, request: Request, run_id: str) -> Response:
        run = selectors.run_get(run_id=run_id)
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

    def _owner(self, owner_id: Any) -> Any:
        raise NotImplementedError

    def _may_read(self, request: Request, owner: Any) -> bool:
        raise NotImplementedError

    def _lines(self, request: Request, owner_id: Any) -> Response:
        params = request.query_params
        after = parse_count(params.get("after", "0"), field="after")
        before = params.get("before")
        before_seq = parse_count(before, field="before") if before is not None else None
        limit = min(parse_count(params.get("limit", "1000"), field="limit", minimum=1), 5000)
        owner = self._owner(owner_id)
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

    def _owner(self, owner_id: Any) -> Any:
        return selectors.session_get(session_id=owner_id)

    def _may_read(self, request: Request, owner: Any) -> bool:
        return access.can_view_session(request.user, owner)

    @documented(ok={200: "{lines: [...]}"}, errors=(400, 404), parameters=LOG_PARAMETERS)
    def get(self, request: Request, session_id: str) -> Response:
        return self._lines(request, session_id)


class RunLogLinesApi(LogLinesApi):
    owner_kind = "run"

    def _owner(self, owner_id: Any) -> Any:
        return selectors.run_get(run_id=owner_id)

    def _may_read(self, request: Request, owner: Any) -> bool:
        return access.can_view_run(request.user, owner)

    @documented(ok={200: "{lines: [...]}"}, errors=(400, 404), parameters=LOG_PARAMETERS)
    def get(self, request: Request, run_id: str) -> Response:
        return self._lines(request, run_id)


class NodeEnrollApi(AuditedApiView):
    """Register a participant node's SuperNode public key with the SuperLink (SuperNode auth)."""

    permission_classes = [FederationControl]
    audit_action = "node.enroll"

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "NodeEnrollInput"  # a unique OpenAPI component name

        public_key = StrictChar(max_length=2000)

    @documented(
        ok={201: "registered", 202: "not yet registered"}, errors=(400, 404, 409, 502, 503), request=InputSerializer
    )
    def post(self, request: Request, node_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = selectors.node_get(node_id=node_id)
        if node is None:
            return Response({"detail": f"node {node_id} not found", "field": "node_id"}, status=404)
        enrollment = services.node_enrollment_request(node=node, public_key=data.validated_data["public_key"])
        enrollment = waits.enrollment_wait(enrollment_id=enrollment.pk, timeout=settings.START_WAIT_SECONDS)
        code = {EnrollmentStatus.REGISTERED: 201, EnrollmentStatus.REQUESTED: 202}.get(enrollment.status, 502)
        return Response(enrollment_output(enrollment), status=code)


class NodeRevokeApi(AuditedApiView):
    """Unregister a node's key: its SuperNodes can no longer join the federation."""

    permission_classes = [FederationControl]
    audit_action = "node.revoke"

    @documented(ok={200: "revoked", 202: "revocation pending"}, errors=(404, 409, 503), request=None)
    def post(self, request: Request, node_id: str) -> Response:
        node = selectors.node_get(node_id=node_id)
        if node is None:
            return Response({"detail": f"node {node_id} not found", "field": "node_id"}, status=404)
        enrollment = services.node_enrollment_revoke(node=node)
        enrollment = waits.enrollment_wait(enrollment_id=enrollment.pk, timeout=settings.START_WAIT_SECONDS)
        return Response(
            enrollment_output(enrollment), status=200 if enrollment.status == EnrollmentStatus.REVOKED else 202
        )
