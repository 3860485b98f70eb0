"""Every API answer is JSON, one the database could not serve too."""

from __future__ import annotations

from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from core.exception_handlers import database_unavailable


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A database error that escapes a view on an API path (`/api/...`, `/health`) answers a JSON
    503 with Retry-After instead of Django's HTML 500: DRF's handler covers the views themselves,
    this what runs after them (the audit record of a refused request) and the plain Django views."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> JsonResponse | None:
        if not isinstance(exception, OperationalError):
            return None
        if not (request.path.startswith("/api/") or request.path == "/health"):
            return None
        body, headers = database_unavailable(exception)
        return JsonResponse(body, status=503, headers=headers)
