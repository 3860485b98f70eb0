"""What every view of the dashboard's data API shares: errors, auditing, OpenAPI and the coordinator check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import permissions
from accounts.drf import AuditedApiView
from accounts.models import Project
from core.errors import NotFound
from core.openapi import ERRORS, ErrorSerializer
from portal import selectors


class PortalApiView(AuditedApiView):
    """Failed POSTs are audited here; the accounts services audit the ones that change something."""

    post_action: str | None = None  # the audit log's name for this view's POST

    @property
    def audit_action(self) -> str | None:  # type: ignore[override]
        """Only a POST is an action; a refused GET is logged under its method and path."""
        request = getattr(self, "request", None)
        return self.post_action if request is not None and request.method == "POST" else None

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.status_code < 400:
            self._audited = True  # the service recorded it (project.create, project.join, ...)
        return super().finalize_response(request, response, *args, **kwargs)


def coordinated_project(request: Request, project_id: Any, *, field: str = "project_id") -> Project:
    """The project, if the caller coordinates it (or is staff); otherwise it does not exist for the caller."""
    project = selectors.project_get(project_id=project_id, projects=permissions.visible_project_ids(request.user))
    if project is None or not permissions.can_control_federation(request.user, project):
        raise NotFound(f"project {project_id} not found", field=field)
    return project


def documented(
    *,
    ok: dict[int, str],
    errors: tuple[int, ...],
    request: Any = None,
    parameters: list[OpenApiParameter] | None = None,
    array: bool = False,
    operation_id: str | None = None,
) -> Callable[[Any], Any]:
    """core.openapi.documented, and `array=True` for the answers that are JSON arrays (ProjectSummary[])."""
    body: Any = {"type": "array", "items": {"type": "object"}} if array else OpenApiTypes.OBJECT
    responses: dict[int, Any] = {code: OpenApiResponse(body, description=text) for code, text in ok.items()}
    responses.update({code: OpenApiResponse(ErrorSerializer, description=ERRORS[code]) for code in (*errors, 401, 403)})
    return extend_schema(request=request, responses=responses, parameters=parameters, operation_id=operation_id)


PROJECT_ID_PARAMETER = OpenApiParameter("projectId", OpenApiTypes.UUID, required=True, description="the project")


@extend_schema(exclude=True)
class NotFoundApi(PortalApiView):
    """Any other path under the dashboard's prefixes: 401 when not signed in, else a JSON 404."""

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(f"{request.path} not found")

    get = post = put = patch = delete = _not_found
