from __future__ import annotations

from django.urls import path

from orchestration import consumers

websocket_urlpatterns = [
    path("ws/sessions/<str:session_id>/logs/", consumers.SessionLogConsumer.as_asgi()),
    path("ws/runs/<str:run_id>/logs/", consumers.RunLogConsumer.as_asgi()),
    path("ws/projects/<str:project_id>/events/", consumers.ProjectEventsConsumer.as_asgi()),
]
