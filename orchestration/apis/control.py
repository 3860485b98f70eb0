"""Coordinator control API: health, the SuperLink and runs, for the project the request names
(or the caller's, see orchestration.scoping). Paths and field names match the dashboard's
`lib/fetchers/types.ts`; pids are strings there."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.drf import AuditedApiView
from core.fields import ExtraArgs, ScopedInput, StrictBoolean, StrictChar, validated_body
from core.openapi import documented
from core.public_paths import public_text
from core.throttling import ControlRateThrottle
from orchestration import scoping, selectors, services, waits
from orchestration.models import RunStatus, SessionStatus
from orchestration.runtime_config import RESTART_NEVER, RESTART_POLICIES, superlink_config
from orchestration.serializers import iso, pid_text, public_path, run_info_output, run_output


class ControlInput(ScopedInput):
    class Meta:
        ref_name = "ControlInput"  # a unique OpenAPI component name


def _scope(request: Request, data: dict[str, Any], *, node_key: str = "node_id") -> scoping.Scope:
    scoping.check_user_id(request.user, data.pop("user_id", None))
    scope = scoping.coordinator_scope(
        user=request.user,
        project_id=data.pop("project_id", None),
        node_id=data.pop(node_key, None),
        control=True,
        node_field=node_key,
    )
    assert scope is not None  # control=True raises instead
    return scope


class CoordinatorHealthApi(AuditedApiView):
    @documented(ok={200: "coordinator state and supervisor liveness"}, errors=(400, 404))
    def get(self, request: Request) -> Response:
        scope = scoping.coordinator_scope(
            user=request.user, project_id=request.query_params.get("project_id"), control=False
        )
        supervisor = selectors.supervisor_status()
        if scope is None:  # signed in, but coordinates nothing yet
            return Response(_empty_health() | supervisor)
        project, coordinator = scope.project, scope.node
        superlink = selectors.session_live_superlink(project=project)
        run = selectors.run_live(project=project)
        running = superlink is not None and superlink.status == SessionStatus.RUNNING
        is_default = project.slug == settings.PROJECT_SLUG
        default = (project, coordinator) if is_default else scoping.default_project(request.user)
        return Response(
            {
                "status": "ok",
                "superlink_running": running,
                "superlink_status": superlink.status if superlink else None,
                "superlink_started_at": iso(superlink.started_at) if superlink else None,
                "superlink_pid": pid_text(superlink.pid) if superlink else None,
                "superlink_session_id": str(superlink.id) if superlink else None,
                "superlink_insecure": superlink_config(superlink).insecure if superlink else None,
                # What a participant's SuperNode dials (host:port of this project's SuperLink).
                "superlink_address": superlink_config(superlink).connect_address if superlink else None,
                "run_active": run is not None,
                "run_info": None if run is None else run_info_output(run, coordinator=coordinator),
                "default_project_id": str(default[0].id) if default else None,
                "active_project_id": str(project.id),
                "default_coordinator_node_id": str(default[1].id) if default and default[1] else None,
                "active_coordinator_node_id": str(coordinator.id),
                "active_user_id": str(coordinator.user_id) if coordinator.user_id else None,
                **supervisor,
            }
        )


def _empty_health() -> dict[str, Any]:
    return {
        "status": "ok",
        "superlink_running": False,
        "superlink_status": None,
        "superlink_started_at": None,
        "superlink_pid": None,
        "superlink_session_id": None,
        "superlink_insecure": None,
        "superlink_address": None,
        "run_active": False,
        "run_info": None,
        "default_project_id": None,
        "active_project_id": None,
        "default_coordinator_node_id": None,
        "active_coordinator_node_id": None,
        "active_user_id": None,
    }


class SuperlinkStartApi(AuditedApiView):
    audit_action = "superlink.start"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(ScopedInput):
        class Meta:
            ref_name = "SuperlinkStartInput"  # a unique OpenAPI component name

        node_id = serializers.UUIDField(required=False, allow_null=True)
        insecure = StrictBoolean(required=False, default=True)
        certificates_path = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=500)
        listen_address = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=300)
        extra_args = ExtraArgs()
        # What the supervisor does when the process exits by itself (restarts back off).
        restart_policy = serializers.ChoiceField(choices=RESTART_POLICIES, required=False, default=RESTART_NEVER)

    @documented(
        ok={201: "started: status, pid, log_path, session_id"},
        errors=(400, 403, 404, 409, 429, 502, 503),
        request=InputSerializer,
    )
    def post(self, request: Request) -> Response:
        data = validated_body(self.InputSerializer, request)
        scope = _scope(request, data)
        session = services.superlink_request_start(node=scope.node, **data)
        session = waits.session_wait_spawned(session_id=session.id)
        # 502 only when the SuperLink failed to start (not when a stop overtook the answer).
        code = 502 if session.status in (SessionStatus.FAILED, SessionStatus.LOST) else 201
        return Response(
            {
                "status": "started" if session.status == SessionStatus.RUNNING else session.status,
                "pid": pid_text(session.pid),
                "log_path": public_path(session.log_path),
                "session_id": str(session.id),
                "project_id": str(scope.project.id),
                "node_id": str(scope.node.id),
                "superlink_address": superlink_config(session).connect_address,
                "detail": public_text(session.status_detail) or None,
            },
            status=code,
        )


class SuperlinkStopApi(AuditedApiView):
    audit_action = "superlink.stop"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(ScopedInput):
        class Meta:
            ref_name = "SuperlinkStopInput"  # a unique OpenAPI component name

        node_id = serializers.UUIDField(required=False, allow_null=True)

    @documented(ok={200: "stopped or stopping"}, errors=(400, 403, 404, 409, 429), request=InputSerializer)
    def post(self, request: Request) -> Response:
        scope = _scope(request, validated_body(self.InputSerializer, request))
        session = services.superlink_request_stop(node=scope.node)
        session = waits.session_wait_ended(session_id=session.id, timeout=settings.START_WAIT_SECONDS)
        return Response(
            {
                "status": SessionStatus.STOPPED if not session.is_live else SessionStatus.STOPPING,
                "session_id": str(session.id),
                "pid": pid_text(session.pid),
            }
        )


class RunStartApi(AuditedApiView):
    audit_action = "run.start"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(ScopedInput):
        class Meta:
            ref_name = "RunStartInput"  # a unique OpenAPI component name

        coordinator_node_id = serializers.UUIDField(required=False, allow_null=True)
        federation_name = StrictChar(required=False, default="production", max_length=64)
        stream = StrictBoolean(required=False, default=True)
        extra_args = ExtraArgs()
        label = StrictChar(required=False, default="", allow_blank=True, max_length=200)

    @documented(
        ok={
            201: "started: status, pid, log_path, run_id, session_id",
            202: "claimed by the supervisor, which starts `flwr run` once the SuperLink accepts connections",
        },
        errors=(400, 403, 404, 409, 429, 502, 503),
        request=InputSerializer,
    )
    def post(self, request: Request) -> Response:
        data = validated_body(self.InputSerializer, request)
        scope = _scope(request, data, node_key="coordinator_node_id")
        run = services.run_request_start(project=scope.project, **data)
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
                "pid": pid_text(run.pid),
                "log_path": public_path(run.log_path),
                "run_id": str(run.id),
                "flower_run_id": run.flower_run_id or None,
                "session_id": str(run.coordinator_session_id) if run.coordinator_session_id else None,
                "project_id": str(scope.project.id),
                "detail": public_text(run.status_detail)
                or ("waiting for the SuperLink to accept connections" if waiting else None),
            },
            status=(202 if waiting else 201) if ok else 502,
        )


class RunStopApi(AuditedApiView):
    audit_action = "run.stop"
    throttle_classes = [ControlRateThrottle]

    @documented(
        ok={200: "the run's status after the stop request"}, errors=(400, 403, 404, 409, 429), request=ControlInput
    )
    def post(self, request: Request) -> Response:
        scope = _scope(request, validated_body(ControlInput, request))
        run = services.run_request_stop(project=scope.project)
        run = waits.run_wait_ended(run_id=run.id, timeout=settings.START_WAIT_SECONDS)
        return Response({"status": run.status, "run_id": str(run.id), "flower_run_id": run.flower_run_id or None})


class RunActiveApi(AuditedApiView):
    @documented(ok={200: "{run: ... or null}"}, errors=(400, 404))
    def get(self, request: Request) -> Response:
        scope = scoping.coordinator_scope(
            user=request.user, project_id=request.query_params.get("project_id"), control=False
        )
        run = selectors.run_live(project=scope.project) if scope else None
        if run is None or scope is None:
            return Response({"run": None})
        # The dashboard reads this as its RunInfo (pid a string); the full run comes along.
        return Response({"run": run_output(run) | run_info_output(run, coordinator=scope.node)})
