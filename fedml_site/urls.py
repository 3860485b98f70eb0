from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from orchestration import selectors


def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Every API answer is JSON, a path that does not exist too."""
    return JsonResponse({"detail": f"{request.path} not found", "field": None}, status=404)


def health(request: HttpRequest) -> JsonResponse:
    status = selectors.supervisor_status()
    return JsonResponse({"status": "ok", **status})


urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="schema"),
    path(
        "api/schema/ui/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[AllowAny]),
        name="schema-ui",
    ),
    path("health", health),
    path("admin/", admin.site.urls),
    path("api/coordinator/", include("orchestration.urls")),
    path("api/participant/", include("participants.urls")),
    # Embedded Supabase Auth (GoTrue's /auth/v1/...), 404 unless FEDML_EMBEDDED_AUTH.
    path("auth/v1/", include("accounts.gotrue_urls")),
    # The dashboard's data routes (its own origin's /api/admin and /api/client, rewritten to FedML).
    path("api/", include("portal.urls")),
    re_path(r"^api/(?P<rest>.*)$", api_not_found),
]
