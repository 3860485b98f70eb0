from __future__ import annotations

from django.urls import path

from participants import apis

urlpatterns = [
    path("health", apis.ParticipantHealthApi.as_view()),
    path("supernode/start", apis.SupernodeStartApi.as_view()),
    path("supernode/stop", apis.SupernodeStopApi.as_view()),
    path("supernodes", apis.SupernodeListApi.as_view()),
    path("supernode/keys", apis.SupernodeKeyApi.as_view()),
    path("supernodes/<uuid:session_id>", apis.SupernodeDetailApi.as_view()),
    path("supernodes/<uuid:session_id>/stop", apis.SupernodeSessionStopApi.as_view()),
]
