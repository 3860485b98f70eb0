"""The dashboard's data routes, mounted at `api/`: its origin rewrites `/api/admin/*` and `/api/client/*` here."""

from __future__ import annotations

from django.urls import path, re_path

from portal.apis import admin, client
from portal.apis.base import NotFoundApi

urlpatterns = [
    path("admin/projects", admin.AdminProjectsApi.as_view()),
    path("admin/projects/<uuid:project_id>", admin.AdminProjectApi.as_view()),
    path("admin/projects/<uuid:project_id>/nodes", admin.AdminProjectNodesApi.as_view()),
    path("admin/projects/<uuid:project_id>/runs", admin.AdminProjectRunsApi.as_view()),
    path("admin/projects/<uuid:project_id>/runs/<uuid:run_id>", admin.AdminRunApi.as_view()),
    path("admin/projects/<uuid:project_id>/joins", admin.AdminJoinsApi.as_view()),
    path(
        "admin/projects/<uuid:project_id>/joins/<uuid:node_id>/approve",
        admin.AdminJoinDecideApi.as_view(approve=True),
    ),
    path(
        "admin/projects/<uuid:project_id>/joins/<uuid:node_id>/refuse",
        admin.AdminJoinDecideApi.as_view(approve=False),
    ),
    path("admin/dashboard", admin.AdminDashboardApi.as_view()),
    path("client/projects", client.ClientProjectsApi.as_view()),
    path("client/projects/<uuid:project_id>", client.ClientProjectApi.as_view()),
    path("client/projects/<uuid:project_id>/join", client.ClientJoinApi.as_view()),
    path("client/dashboard", client.ClientDashboardApi.as_view()),
    path("auth/signup", client.SignupApi.as_view()),
    # Anything else under these prefixes (an id that is not a UUID, a path that does not exist): a JSON 404.
    re_path(r"^(?:admin|client)(?:/.*)?$", NotFoundApi.as_view()),
]
