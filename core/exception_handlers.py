from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import ApplicationError


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
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        response.data.setdefault("field", None)  # DRF's own 401/403/404/405: no input is at fault
    return response
