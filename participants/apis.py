"""Participant HTTP API: the SuperNodes of this site."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services as accounts_services
from accounts.drf import AuditedApiView, SiteControl, SiteView
from core.fields import ExtraArgs, StrictBoolean, StrictChar, StrictInteger, StrictSerializer
from core.openapi import documented
from orchestration import selectors as orchestration_selectors
from orchestration import services as orchestration_services
from orchestration import waits
from orchestration.models import SessionStatus
from orchestration.runtime_config import supernode_config
from orchestration.serializers import iso, session_output
from participants import keys, selectors, services


class ParticipantHealthApi(AuditedApiView):
    permission_classes = [SiteView]

    @documented(ok={200: "this site's SuperNodes and supervisor liveness"}, errors=())
    def get(self, request: Request) -> Response:
        node = accounts_services.participant_node_ensure()
        live = list(selectors.session_live_supernodes(node=node))
        current = live[0] if live else selectors.supernode_latest(node=node)
        running = [s for s in live if s.status == SessionStatus.RUNNING]
        return Response(
            {
                "status": "ok",
                "supernode_running": bool(running),
                "started_at": iso(current.started_at) if current else None,
                "log_path": (current.log_path or None) if current else None,
                "session_id": str(current.id) if current else None,
                "project_id": str(node.project_id),
                "node_id": str(node.id),
                "supernodes": [session_output(s) for s in live],
                **orchestration_selectors.supervisor_status(),
            }
        )


class SupernodeStartApi(AuditedApiView):
    permission_classes = [SiteControl]
    audit_action = "supernode.start"

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "SupernodeStartInput"  # a unique OpenAPI component name

        superlink_address = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=300)
        partition_id = StrictInteger(required=False, default=0, min_value=0, max_value=100000)
        num_partitions = StrictInteger(required=False, default=1, min_value=1, max_value=100000)
        clientappio_api_address = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=300)
        insecure = StrictBoolean(required=False, default=True)
        certificates_path = StrictChar(required=False, allow_null=True, allow_blank=True, max_length=500)
        extra_args = ExtraArgs()

    @documented(
        ok={201: "started: status, pid, log_path, session_id"}, errors=(400, 409, 502, 503), request=InputSerializer
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = accounts_services.participant_node_ensure()
        session = services.supernode_request_start(node=node, **data.validated_data)
        session = waits.session_wait_spawned(session_id=session.id)
        # 502 only when the SuperNode failed to start (not when a stop overtook the answer).
        ok = session.status not in (SessionStatus.FAILED, SessionStatus.LOST)
        return Response(
            {
                "status": "started" if session.status == SessionStatus.RUNNING else session.status,
                "pid": session.pid,
                "log_path": session.log_path or None,
                "session_id": str(session.id),
                "clientappio_api_address": supernode_config(session).clientappio_api_address,
                "detail": session.status_detail or None,
            },
            status=201 if ok else 502,
        )


class SupernodeStopApi(AuditedApiView):
    permission_classes = [SiteControl]
    audit_action = "supernode.stop"

    class InputSerializer(StrictSerializer):
        class Meta:
            ref_name = "SupernodeStopInput"  # a unique OpenAPI component name

        session_id = serializers.UUIDField(required=False, allow_null=True)

    @documented(ok={200: "stopped or stopping"}, errors=(400, 409), request=InputSerializer)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        node = accounts_services.participant_node_ensure()
        sessions = services.supernode_request_stop(node=node, session_id=data.validated_data.get("session_id"))
        ended = [waits.session_wait_ended(session_id=s.id, timeout=settings.START_WAIT_SECONDS) for s in sessions]
        return Response(
            {
                "status": SessionStatus.STOPPED if all(not s.is_live for s in ended) else SessionStatus.STOPPING,
                "session_ids": [str(s.id) for s in ended],
                "session_id": str(ended[0].id),
            }
        )


class SupernodeListApi(AuditedApiView):
    permission_classes = [SiteView]

    @documented(ok={200: "{supernodes: [...]}"}, errors=(), operation_id="participant_supernodes_list")
    def get(self, request: Request) -> Response:
        node = accounts_services.participant_node_ensure()
        return Response({"supernodes": [session_output(s) for s in selectors.session_live_supernodes(node=node)]})


class SupernodeDetailApi(AuditedApiView):
    permission_classes = [SiteView]

    @documented(ok={200: "one SuperNode session"}, errors=(404,))
    def get(self, request: Request, session_id: str) -> Response:
        node = accounts_services.participant_node_ensure()
        session = orchestration_services.session_get_or_404(session_id=session_id, node=node)
        return Response(session_output(session))


class SupernodeSessionStopApi(AuditedApiView):
    permission_classes = [SiteControl]
    audit_action = "supernode.stop"

    @documented(ok={200: "stopped or stopping"}, errors=(404, 409), request=None)
    def post(self, request: Request, session_id: str) -> Response:
        node = accounts_services.participant_node_ensure()
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

    permission_classes = [SiteControl]
    audit_action = "supernode.keys"

    @documented(ok={200: "{node_id, public_key}"}, errors=(), request=None)
    def post(self, request: Request) -> Response:
        node = accounts_services.participant_node_ensure()
        return Response({"node_id": str(node.pk), "public_key": keys.keypair_ensure(node)})
