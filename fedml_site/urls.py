from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from orchestration import selectors


def health(request: HttpRequest) -> JsonResponse:
    status = selectors.supervisor_status()
    return JsonResponse({"status": "ok", **status})


urlpatterns = [
    path("health", health),
    path("admin/", admin.site.urls),
    path("api/coordinator/", include("orchestration.urls")),
    path("api/participant/", include("participants.urls")),
]
