"""OpenAPI descriptions for drf-spectacular: one error shape, responses listed per status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What is wrong, naming the field where there is one.")
    field = serializers.CharField(required=False, allow_null=True, help_text="The input field at fault, if any.")


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A FedML API token (fedml_<prefix>_<secret>) or a Supabase access token.",
        }


ERRORS = {
    400: "bad input: `field` names it; nothing was changed",
    401: "not signed in",
    403: "signed in, but not allowed",
    404: "no such object",
    409: "conflicts with the current state (already running, nothing to stop)",
    429: "too many requests that change something from this caller (FEDML_RATE_CONTROL): `limit` names the "
    "limit, `Retry-After` says when to try again; nothing was changed",
    502: "the Flower process failed to start; `detail` says why",
    503: "no supervisor is running (start one with `python manage.py runsupervisor`)",
}


def documented(
    *,
    ok: dict[int, str],
    errors: tuple[int, ...],
    request: Any = None,
    parameters: list[OpenApiParameter] | None = None,
    operation_id: str | None = None,
) -> Callable[[Any], Any]:
    responses: dict[int, Any] = {
        code: OpenApiResponse(OpenApiTypes.OBJECT, description=text) for code, text in ok.items()
    }
    responses.update({code: OpenApiResponse(ErrorSerializer, description=ERRORS[code]) for code in (*errors, 401, 403)})
    return extend_schema(request=request, responses=responses, parameters=parameters, operation_id=operation_id)
