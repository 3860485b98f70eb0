from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import ApplicationError
from core.throttling import RateLimited

logger = logging.getLogger(__name__)

# A request the database could not serve (its connection pool exhausted for FEDML_DB_POOL_TIMEOUT,
# too many clients, unreachable) is worth retrying shortly.
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: OperationalError) -> tuple[dict[str, Any], dict[str, str]]:
    """The 503's body and headers (for DRF views here, for any other API path in core.middleware)."""
    logger.warning("database unavailable for an API request: %s", exc)
    detail = f"the database cannot take this request now (too busy or unreachable); retry in {DATABASE_RETRY_AFTER_SECONDS} s"
    return {"detail": detail, "field": None}, {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}


def _first_field(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            field, message = _first_field(value, f"{prefix}{key}." if name else prefix)
            return (field or (f"{prefix}{key}" if name else None)), message
    if isinstance(detail, list) and detail:
        return _first_field(detail[0], prefix)
    return None, str(detail)


def fedml_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error body is {"detail": "...", "field": "<input field or null>", ...}."""
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message, "field": exc.field, **exc.extra}
        return Response(body, status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_field(exc.detail)
        detail = f"{field}: {message}" if field else message
        return Response({"detail": detail, "field": field, "errors": exc.detail}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "body: the request body is too large", "field": "body"}, status=400)
    if isinstance(exc, exceptions.ParseError):
        return Response({"detail": f"body: {exc.detail}", "field": "body"}, status=400)
    if isinstance(exc, RateLimited):
        body = {"detail": exc.detail, "field": None, "limit": exc.limit, "scope": exc.scope, "retry_after": exc.wait}
        return Response(body, status=429, headers={"Retry-After": str(exc.wait)})
    if isinstance(exc, OperationalError):
        body, headers = database_unavailable(exc)
        return Response(body, status=503, headers=headers)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        response.data.setdefault("field", None)  # DRF's own 401/403/404/405: no input is at fault
    return response
