"""Participant HTTP API: the SuperNodes of a site (a participant node), for the project and node
the request names or the caller's own (orchestration.scoping)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import permissions as access
from accounts.drf import AuditedApiView
from core.errors import Forbidden
from core.fields import ExtraArgs, ScopedInput, StrictBoolean, StrictChar, StrictInteger, validated_body
from core.openapi import documented
from core.public_paths import public_text
from core.throttling import ControlRateThrottle
from orchestration import scoping, waits
from orchestration import selectors as orchestration_selectors
from orchestration.models import SessionStatus
from orchestration.runtime_config import RESTART_NEVER, RESTART_POLICIES, supernode_config
from orchestration.serializers import iso, pid_text, public_path, session_output
from participants import keys, selectors, services


def _site(request: Request, data: dict[str, Any] | None = None, *, control: bool) -> scoping.Scope | None:
    """The site a request is about: from the body (`data`, whose scope keys are consumed) or the query string."""
    if data is not None:
        scoping.check_user_id(request.user, data.pop("user_id", None))
        project_id, node_id = data.pop("project_id", None), data.pop("node_id", None)
    else:
        project_id, node_id = request.query_params.get("project_id"), request.query_params.get("node_id")
    return scoping.site_scope(user=request.user, project_id=project_id, node_id=node_id, control=control)


def _controlled_site(request: Request, data: dict[str, Any] | None = None) -> Any:
    scope = _site(request, data, control=True)
    assert scope is not None  # control=True raises instead
    return scope.node


def _visible_supernode(request: Request, session_id: str) -> Any:
    """A SuperNode session of a project the caller may see (another project's is not found)."""
    projects = access.visible_project_ids(request.user)
    session = orchestration_selectors.session_get(session_id=session_id, projects=projects)
    return session if session is not None and session.kind == "supernode" else None


class SiteInput(ScopedInput):
    class Meta:
        ref_name = "SiteInput"  # a unique OpenAPI component name

    node_id = serializers.UUIDField(required=False, allow_null=True)


class ParticipantHealthApi(AuditedApiView):
    @documented(ok={200: "this site's SuperNodes and supervisor liveness"}, errors=(400, 404))
    def get(self, request: Request) -> Response:
        scope = _site(request, control=False)
        if scope is None:  # signed in, but no node in any project yet
            return Response(
                {
                    "status": "ok",
                    "supernode_running": False,
                    "started_at": None,
                    "log_path": None,
                    "session_id": None,
                    "project_id": None,
                    "node_id": None,
                    "user_id": None,
                    "supernodes": [],
                    **orchestration_selectors.supervisor_status(),
                }
            )
        node = scope.node
        live = list(selectors.session_live_supernodes(node=node))
        current = live[0] if live else selectors.supernode_latest(node=node)
        running = [s for s in live if s.status == SessionStatus.RUNNING]
        return Response(
            {
                "status": "ok",
                "supernode_running": bool(running),
                "started_at": iso(current.started_at) if current else None,
                "log_path": public_path(current.log_path) if current else None,
                "session_id": str(current.id) if current else None,
                "project_id": str(node.project_id),
                "node_id": str(node.id),
                "user_id": str(node.user_id) if node.user_id else None,
                "pid": pid_text(current.pid) if current else None,
                "supernodes": [session_output(s) for s in live],
                **orchestration_selectors.supervisor_status(),
            }
        )


class SupernodeStartApi(AuditedApiView):
    audit_action = "supernode.start"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(SiteInput):
        class Meta:
            ref_name = "SupernodeStartInput"  # a unique OpenAPI component name

        superlink_address = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=300)
        partition_id = StrictInteger(required=False, default=0, min_value=0, max_value=100000)
        num_partitions = StrictInteger(required=False, default=1, min_value=1, max_value=100000)
        clientappio_api_address = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=300)
        insecure = StrictBoolean(required=False, default=True)
        certificates_path = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=500)
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
        node = _controlled_site(request, data)
        session = services.supernode_request_start(node=node, **data)
        session = waits.session_wait_spawned(session_id=session.id)
        # 502 only when the SuperNode failed to start (not when a stop overtook the answer).
        ok = session.status not in (SessionStatus.FAILED, SessionStatus.LOST)
        return Response(
            {
                "status": "started" if session.status == SessionStatus.RUNNING else session.status,
                "pid": pid_text(session.pid),
                "log_path": public_path(session.log_path),
                "session_id": str(session.id),
                "project_id": str(node.project_id),
                "node_id": str(node.id),
                "clientappio_api_address": supernode_config(session).clientappio_api_address,
                "detail": public_text(session.status_detail) or None,
            },
            status=201 if ok else 502,
        )


class SupernodeStopApi(AuditedApiView):
    audit_action = "supernode.stop"
    throttle_classes = [ControlRateThrottle]

    class InputSerializer(SiteInput):
        class Meta:
            ref_name = "SupernodeStopInput"  # a unique OpenAPI component name

        session_id = serializers.UUIDField(required=False, allow_null=True)

    @documented(ok={200: "stopped or stopping"}, errors=(400, 403, 404, 409, 429), request=InputSerializer)
    def post(self, request: Request) -> Response:
        data = validated_body(self.InputSerializer, request)
        node = _controlled_site(request, data)
        sessions = services.supernode_request_stop(node=node, session_id=data.get("session_id"))
        ended = [waits.session_wait_ended(session_id=s.id, timeout=settings.START_WAIT_SECONDS) for s in sessions]
        return Response(
            {
                "status": SessionStatus.STOPPED if all(not s.is_live for s in ended) else SessionStatus.STOPPING,
                "session_ids": [str(s.id) for s in ended],
                "session_id": str(ended[0].id),
            }
        )


class SupernodeListApi(AuditedApiView):
    @documented(ok={200: "{supernodes: [...]}"}, errors=(400, 404), operation_id="participant_supernodes_list")
    def get(self, request: Request) -> Response:
        scope = _site(request, control=False)
        if scope is None:
            return Response({"supernodes": []})
        node = scope.node
        return Response({"supernodes": [session_output(s) for s in selectors.session_live_supernodes(node=node)]})


class SupernodeDetailApi(AuditedApiView):
    @documented(ok={200: "one SuperNode session"}, errors=(404,))
    def get(self, request: Request, session_id: str) -> Response:
        session = _visible_supernode(request, session_id)
        if session is None:
            return Response({"detail": f"session {session_id} not found", "field": "session_id"}, status=404)
        if not access.can_view_session(request.user, session):
            self.permission_denied(request, message="only this site's participant or the project's coordinators")
        return Response(session_output(session))


class SupernodeSessionStopApi(AuditedApiView):
    audit_action = "supernode.stop"
    throttle_classes = [ControlRateThrottle]

    @documented(ok={200: "stopped or stopping"}, errors=(403, 404, 409, 429), request=None)
    def post(self, request: Request, session_id: str) -> Response:
        session = _visible_supernode(request, session_id)
        if session is None:
            return Response({"detail": f"session {session_id} not found", "field": "session_id"}, status=404)
        if not access.can_control_node(request.user, session.node):
            raise Forbidden("only this site's participant may control its SuperNodes")
        node = session.node
        sessions = services.supernode_request_stop(node=node, session_id=session_id)
        session = waits.session_wait_ended(session_id=sessions[0].id, timeout=settings.START_WAIT_SECONDS)
        return Response(
            {
                "status": SessionStatus.STOPPED if not session.is_live else SessionStatus.STOPPING,
                "session_id": str(session.id),
            }
        )


class SupernodeKeyApi(AuditedApiView):
    """This site's SuperNode key pair: created once, the private key never leaves the site.

    Give the returned public key to the coordinator (POST /api/coordinator/nodes/<node_id>/enroll).
    """

    audit_action = "supernode.keys"
    throttle_classes = [ControlRateThrottle]

    @documented(ok={200: "{node_id, public_key}"}, errors=(400, 403, 404, 429), request=SiteInput)
    def post(self, request: Request) -> Response:
        node = _controlled_site(request, validated_body(SiteInput, request))
        return Response({"node_id": str(node.pk), "public_key": keys.keypair_ensure(node)})
