from __future__ import annotations

from django.urls import path

from orchestration import apis

urlpatterns = [
    path("health", apis.CoordinatorHealthApi.as_view()),
    path("superlink/start", apis.SuperlinkStartApi.as_view()),
    path("superlink/stop", apis.SuperlinkStopApi.as_view()),
    path("runs/start", apis.RunStartApi.as_view()),
    path("runs/stop", apis.RunStopApi.as_view()),
    path("runs/active", apis.RunActiveApi.as_view()),
    path("runs/<uuid:run_id>", apis.RunDetailApi.as_view()),
    path("nodes/<uuid:node_id>/enroll", apis.NodeEnrollApi.as_view()),
    path("nodes/<uuid:node_id>/revoke", apis.NodeRevokeApi.as_view()),
    path("sessions/<uuid:session_id>/logs", apis.SessionLogLinesApi.as_view()),
    path("runs/<uuid:run_id>/logs", apis.RunLogLinesApi.as_view()),
]
