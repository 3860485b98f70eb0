"""The authorization matrix's expectations: for every API endpoint and every websocket route, what
each identity gets when it is aimed at project A's records (tests/test_authorization_matrix.py).

A row is (route pattern as the URL resolver spells it, method, path, body or query, expected), with
`expected` one status per identity, in IDENTITIES order. Paths and bodies name A's records by
placeholder ({P} project, {RUN} run, {LINK} SuperLink session, {SN} participant A's SuperNode
session, {SITE} participant A's node (enrolled), {SITE2} a second site (not enrolled), {PENDING} a
pending join, {KEY} a valid SuperNode public key).

How to read a row: 401 not signed in, 403 may see the project but not do this, 404 the record is
outside the caller's projects (so its existence does not leak), 2xx allowed. Two allowed answers
are not 2xx because of the world's state, and are reached only past the role check: 409 (A's
SuperLink and run are already live) and 503 (no supervisor claims a new SuperNode in the fast tier).
"""

from __future__ import annotations

from typing import Any

IDENTITIES = ("anonymous", "no_role", "participant_a", "participant_b", "coordinator_a", "coordinator_b", "staff")
# The projects each identity stands in (staff: every one).
STANDING = {
    "anonymous": frozenset(),
    "no_role": frozenset(),
    "participant_a": frozenset({"a"}),
    "participant_b": frozenset({"b"}),
    "coordinator_a": frozenset({"a"}),
    "coordinator_b": frozenset({"b"}),
    "staff": frozenset({"a", "b"}),
}
PARTICIPANTS = {"participant_a": "a", "participant_b": "b"}

Row = tuple[str, str, str, Any, tuple[int, ...]]

P = {"project_id": "{P}"}
# fmt: off
HTTP: list[Row] = [
    # route, method, path, body/query,                                       anon  none  partA partB coorA coorB staff
    ("health", "get", "/health", None,                                        (200, 200, 200, 200, 200, 200, 200)),
    ("api/schema/", "get", "/api/schema/", None,                              (200, 200, 200, 200, 200, 200, 200)),
    ("api/schema/ui/", "get", "/api/schema/ui/", None,                        (200, 200, 200, 200, 200, 200, 200)),
    # ---- coordinator API: A's project named, or A's records by id
    ("api/coordinator/health", "get", "/api/coordinator/health", P,           (401, 404, 200, 404, 200, 404, 200)),
    ("api/coordinator/health", "get", "/api/coordinator/health", None,        (401, 200, 200, 200, 200, 200, 200)),
    ("api/coordinator/superlink/start", "post", "/api/coordinator/superlink/start", P,
                                                                              (401, 404, 403, 404, 409, 404, 409)),
    ("api/coordinator/superlink/stop", "post", "/api/coordinator/superlink/stop", P,
                                                                              (401, 404, 403, 404, 200, 404, 200)),
    ("api/coordinator/runs/start", "post", "/api/coordinator/runs/start", P,  (401, 404, 403, 404, 409, 404, 409)),
    ("api/coordinator/runs/stop", "post", "/api/coordinator/runs/stop", P,    (401, 404, 403, 404, 200, 404, 200)),
    # Unnamed: each coordinator stops its own project's run (staff: the default project has none).
    ("api/coordinator/runs/stop", "post", "/api/coordinator/runs/stop", {},   (401, 403, 403, 403, 200, 200, 409)),
    ("api/coordinator/runs/active", "get", "/api/coordinator/runs/active", P, (401, 404, 200, 404, 200, 404, 200)),
    ("api/coordinator/runs/active", "get", "/api/coordinator/runs/active", None,
                                                                              (401, 200, 200, 200, 200, 200, 200)),
    ("api/coordinator/runs/<uuid:run_id>", "get", "/api/coordinator/runs/{RUN}", None,
                                                                              (401, 404, 200, 404, 200, 404, 200)),
    ("api/coordinator/nodes/<uuid:node_id>/enroll", "post", "/api/coordinator/nodes/{SITE2}/enroll",
     {"public_key": "{KEY}"},                                                 (401, 404, 403, 404, 202, 404, 202)),
    ("api/coordinator/nodes/<uuid:node_id>/revoke", "post", "/api/coordinator/nodes/{SITE}/revoke", {},
                                                                              (401, 404, 403, 404, 202, 404, 202)),
    ("api/coordinator/sessions/<uuid:session_id>/logs", "get", "/api/coordinator/sessions/{LINK}/logs", None,
                                                                              (401, 404, 403, 404, 200, 404, 200)),
    ("api/coordinator/sessions/<uuid:session_id>/logs", "get", "/api/coordinator/sessions/{SN}/logs", None,
                                                                              (401, 404, 200, 404, 200, 404, 200)),
    ("api/coordinator/runs/<uuid:run_id>/logs", "get", "/api/coordinator/runs/{RUN}/logs", None,
                                                                              (401, 404, 200, 404, 200, 404, 200)),
    # ---- participant API: A's site named, or A's SuperNode session by id
    ("api/participant/health", "get", "/api/participant/health", {"node_id": "{SITE}"},
                                                                              (401, 404, 200, 404, 200, 404, 200)),
    ("api/participant/health", "get", "/api/participant/health", None,        (401, 200, 200, 200, 200, 200, 200)),
    ("api/participant/supernode/start", "post", "/api/participant/supernode/start",
     {"node_id": "{SITE}", "superlink_address": "127.0.0.1:9"},              (401, 404, 503, 404, 403, 404, 503)),
    ("api/participant/supernode/stop", "post", "/api/participant/supernode/stop", {"node_id": "{SITE}"},
                                                                              (401, 404, 200, 404, 403, 404, 200)),
    ("api/participant/supernodes", "get", "/api/participant/supernodes", {"node_id": "{SITE}"},
                                                                              (401, 404, 200, 404, 200, 404, 200)),
    ("api/participant/supernode/keys", "post", "/api/participant/supernode/keys", {"node_id": "{SITE}"},
                                                                              (401, 404, 200, 404, 403, 404, 200)),
    ("api/participant/supernodes/<uuid:session_id>", "get", "/api/participant/supernodes/{SN}", None,
                                                                              (401, 404, 200, 404, 200, 404, 200)),
    ("api/participant/supernodes/<uuid:session_id>/stop", "post", "/api/participant/supernodes/{SN}/stop", {},
                                                                              (401, 404, 200, 404, 403, 404, 200)),
    # ---- the dashboard's admin API: coordinators of A and staff; to anyone else A is not found
    ("api/admin/projects", "get", "/api/admin/projects", None,                (401, 200, 200, 200, 200, 200, 200)),
    ("api/admin/projects", "post", "/api/admin/projects", {"name": "Project c"},
                                                                              (401, 201, 201, 201, 201, 201, 201)),
    ("api/admin/projects/<uuid:project_id>", "get", "/api/admin/projects/{P}", None,
                                                                              (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/projects/<uuid:project_id>/nodes", "get", "/api/admin/projects/{P}/nodes", None,
                                                                              (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/projects/<uuid:project_id>/runs", "get", "/api/admin/projects/{P}/runs", None,
                                                                              (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/projects/<uuid:project_id>/runs/<uuid:run_id>", "get", "/api/admin/projects/{P}/runs/{RUN}", None,
                                                                              (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/projects/<uuid:project_id>/joins", "get", "/api/admin/projects/{P}/joins", None,
                                                                              (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/projects/<uuid:project_id>/joins/<uuid:node_id>/approve", "post",
     "/api/admin/projects/{P}/joins/{PENDING}/approve", {},                   (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/projects/<uuid:project_id>/joins/<uuid:node_id>/refuse", "post",
     "/api/admin/projects/{P}/joins/{PENDING}/refuse", {},                    (401, 404, 404, 404, 200, 404, 200)),
    ("api/admin/dashboard", "get", "/api/admin/dashboard", {"projectId": "{P}"},
                                                                              (401, 404, 404, 404, 200, 404, 200)),
    # ---- the dashboard's client API: every project may be browsed and joined; its dashboard needs a standing
    ("api/client/projects", "get", "/api/client/projects", None,              (401, 200, 200, 200, 200, 200, 200)),
    ("api/client/projects/<uuid:project_id>", "get", "/api/client/projects/{P}", None,
                                                                              (401, 200, 200, 200, 200, 200, 200)),
    ("api/client/projects/<uuid:project_id>/join", "post", "/api/client/projects/{P}/join", {},
                                                                              (401, 201, 200, 201, 200, 201, 201)),
    ("api/client/dashboard", "get", "/api/client/dashboard", {"projectId": "{P}"},
                                                                              (401, 403, 200, 403, 200, 403, 200)),
    ("api/auth/signup", "post", "/api/auth/signup", {},                       (403, 403, 403, 403, 403, 403, 403)),
    # ---- catch-alls (JSON 404s) and embedded sign-in (not served unless FEDML_EMBEDDED_AUTH)
    ("api/^(?:admin|client)(?:/.*)?$", "get", "/api/admin/projects/{P}/secrets", None,
                                                                              (401, 404, 404, 404, 404, 404, 404)),
    ("^api/(?P<rest>.*)$", "get", "/api/coordinator/runs/{RUN}/secrets", None, (404, 404, 404, 404, 404, 404, 404)),
    ("auth/v1/token", "post", "/auth/v1/token?grant_type=password", {},      (404, 404, 404, 404, 404, 404, 404)),
    ("auth/v1/user", "get", "/auth/v1/user", None,                            (404, 404, 404, 404, 404, 404, 404)),
    ("auth/v1/logout", "post", "/auth/v1/logout", {},                         (404, 404, 404, 404, 404, 404, 404)),
    ("auth/v1/signup", "post", "/auth/v1/signup", {},                         (404, 404, 404, 404, 404, 404, 404)),
    ("auth/v1/settings", "get", "/auth/v1/settings", None,                    (404, 404, 404, 404, 404, 404, 404)),
]
# Routes whose answer shows every signed-in person that a project's runs exist (id, label, status):
# browsing, by design; never their config, metrics or log.
BROWSE = frozenset({"api/client/projects", "api/client/projects/<uuid:project_id>"})
# Joining a project is open to anyone signed in: it changes the project it joins.
JOINS = frozenset({"api/client/projects/<uuid:project_id>/join"})
# Not in the matrix: Django's admin (HTML for staff, its own permission model; tests/test_admin_*.py).
NOT_API = ("admin/",)

# Websockets: None is accepted ("hello"), else the close code (4401 not signed in, 4403 forbidden,
# 4404 outside the caller's projects).
WEBSOCKETS: list[Row] = [
    # route, path,                                                 anon  none  partA partB coorA coorB staff
    ("ws/sessions/<str:session_id>/logs/", "ws", "/ws/sessions/{LINK}/logs/", None,
                                                                  (4401, 4404, 4403, 4404, None, 4404, None)),
    ("ws/sessions/<str:session_id>/logs/", "ws", "/ws/sessions/{SN}/logs/", None,
                                                                  (4401, 4404, None, 4404, None, 4404, None)),
    ("ws/runs/<str:run_id>/logs/", "ws", "/ws/runs/{RUN}/logs/", None,
                                                                  (4401, 4404, None, 4404, None, 4404, None)),
    ("ws/projects/<str:project_id>/events/", "ws", "/ws/projects/{P}/events/", None,
                                                                  (4401, 4404, None, 4404, None, 4404, None)),
]
# fmt: on


def fill(value: Any, ids: dict[str, str]) -> Any:
    """A row's path or body with A's ids in place of the placeholders."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: fill(item, ids) for key, item in value.items()}
    return value
