"""Two projects in one deployment never see each other: every HTTP endpoint and every socket, as
project A's coordinator and A's participant, aimed at project B's records. A refusal changes
nothing and no answer carries one of B's ids. The route table is read from the URL resolver, so
an endpoint added without a row here fails the test."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts.services import project_create, project_join
from fedml_site.asgi import application
from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from tests.event_loops import run_bounded
from tests.factories import FederatedRunFactory, NodeSessionFactory, UserFactory, person_of

pytestmark = pytest.mark.django_db(transaction=True)

# Not project-scoped: the schema, the admin, sign-in (and the register page's sign-up) and liveness.
UNSCOPED_PREFIXES = ("api/schema", "admin/", "auth/v1/", "api/auth/", "health")


def _world() -> dict[str, Any]:
    world: dict[str, Any] = {}
    for name in ("a", "b"):
        owner, member = UserFactory(username=f"owner-{name}"), UserFactory(username=f"member-{name}")
        project, coordinator = project_create(owner=person_of(owner), name=f"Project {name}", actor="t", via="t")
        site, _ = project_join(project=project, person=person_of(member), actor="t", via="t")
        pending, _ = project_join(
            project=project, person=person_of(UserFactory(username=f"late-{name}")), actor="t", via="t"
        )
        link = NodeSessionFactory(
            node=coordinator, kind="superlink", status="running", runtime_config={"host": "127.0.0.1", "port": 9}
        )
        supernode = NodeSessionFactory(node=site, kind="supernode", status="running")
        run = FederatedRunFactory(
            project=project,
            status="running",
            coordinator_session=link,
            config={"app_config": {"learning-rate": f"secret-config-{name}"}},
            # Figures no other field holds, one per project.
            metrics={"evaluate": {"1": {"accuracy": {"a": 0.111113, "b": 0.123457}[name]}}},
        )
        world[name] = {
            "owner": owner,
            "member": member,
            "project": project,
            "coordinator": coordinator,
            "site": site,
            "pending": pending,
            "link": link,
            "supernode": supernode,
            "run": run,
        }
    return world


def _requests(b: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """(method, path, body or query, route) aimed at B; `route` is the URL pattern it exercises."""
    p, run, link, sn, site = b["project"].pk, b["run"].pk, b["link"].pk, b["supernode"].pk, b["site"].pk
    named = {"project_id": str(p)}
    return [
        ("get", "/api/coordinator/health", named, "api/coordinator/health"),
        ("post", "/api/coordinator/superlink/start", named, "api/coordinator/superlink/start"),
        ("post", "/api/coordinator/superlink/start", {"node_id": str(b["coordinator"].pk)}, ""),
        ("post", "/api/coordinator/superlink/stop", named, "api/coordinator/superlink/stop"),
        ("post", "/api/coordinator/runs/start", named, "api/coordinator/runs/start"),
        ("post", "/api/coordinator/runs/start", {"coordinator_node_id": str(b["coordinator"].pk)}, ""),
        ("post", "/api/coordinator/runs/stop", named, "api/coordinator/runs/stop"),
        ("get", "/api/coordinator/runs/active", named, "api/coordinator/runs/active"),
        ("get", f"/api/coordinator/runs/{run}", None, "api/coordinator/runs/<uuid:run_id>"),
        (
            "post",
            f"/api/coordinator/nodes/{site}/enroll",
            {"public_key": "k"},
            "api/coordinator/nodes/<uuid:node_id>/enroll",
        ),
        ("post", f"/api/coordinator/nodes/{site}/revoke", {}, "api/coordinator/nodes/<uuid:node_id>/revoke"),
        ("get", f"/api/coordinator/sessions/{link}/logs", None, "api/coordinator/sessions/<uuid:session_id>/logs"),
        ("get", f"/api/coordinator/runs/{run}/logs", None, "api/coordinator/runs/<uuid:run_id>/logs"),
        ("get", "/api/participant/health", named, "api/participant/health"),
        (
            "post",
            "/api/participant/supernode/start",
            {**named, "superlink_address": "127.0.0.1:9"},
            "api/participant/supernode/start",
        ),
        ("post", "/api/participant/supernode/start", {"node_id": str(site), "superlink_address": "127.0.0.1:9"}, ""),
        ("post", "/api/participant/supernode/stop", {"node_id": str(site)}, "api/participant/supernode/stop"),
        ("get", "/api/participant/supernodes", named, "api/participant/supernodes"),
        ("post", "/api/participant/supernode/keys", {"node_id": str(site)}, "api/participant/supernode/keys"),
        ("get", f"/api/participant/supernodes/{sn}", None, "api/participant/supernodes/<uuid:session_id>"),
        ("post", f"/api/participant/supernodes/{sn}/stop", {}, "api/participant/supernodes/<uuid:session_id>/stop"),
        ("get", f"/api/admin/projects/{p}", None, "api/admin/projects/<uuid:project_id>"),
        ("get", f"/api/admin/projects/{p}/nodes", None, "api/admin/projects/<uuid:project_id>/nodes"),
        ("get", f"/api/admin/projects/{p}/runs", None, "api/admin/projects/<uuid:project_id>/runs"),
        ("get", f"/api/admin/projects/{p}/runs/{run}", None, "api/admin/projects/<uuid:project_id>/runs/<uuid:run_id>"),
        ("get", f"/api/admin/projects/{p}/joins", None, "api/admin/projects/<uuid:project_id>/joins"),
        (
            "post",
            f"/api/admin/projects/{p}/joins/{b['pending'].pk}/approve",
            {},
            "api/admin/projects/<uuid:project_id>/joins/<uuid:node_id>/approve",
        ),
        (
            "post",
            f"/api/admin/projects/{p}/joins/{b['pending'].pk}/refuse",
            {},
            "api/admin/projects/<uuid:project_id>/joins/<uuid:node_id>/refuse",
        ),
        ("get", "/api/admin/dashboard", {"projectId": str(p)}, "api/admin/dashboard"),
        ("get", "/api/client/dashboard", {"projectId": str(p)}, "api/client/dashboard"),
    ]


# Routes that list what the caller may see (no id of B's to aim at): checked for B's ids in the answer.
LISTS = [
    ("get", "/api/coordinator/health", None, "api/coordinator/health"),
    ("get", "/api/coordinator/runs/active", None, "api/coordinator/runs/active"),
    ("get", "/api/participant/health", None, "api/participant/health"),
    ("get", "/api/participant/supernodes", None, "api/participant/supernodes"),
    ("get", "/api/admin/projects", None, "api/admin/projects"),
    ("post", "/api/admin/projects", {"name": "Project c"}, "api/admin/projects"),
]
# Browsing: every signed-in person may see that B exists (its name, counts, run statuses), as the
# dashboard's participants do before joining; never B's nodes, sessions, or runs' config and results.
BROWSE = [
    ("get", "/api/client/projects", None, "api/client/projects"),
    ("get", "/api/client/projects/{p}", None, "api/client/projects/<uuid:project_id>"),
    ("post", "/api/client/projects/{p}/join", {}, "api/client/projects/<uuid:project_id>/join"),
]


def _routes() -> set[str]:
    found: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                found.add(prefix + str(entry.pattern))

    walk(get_resolver().url_patterns, "")
    # The catch-all JSON 404 under the dashboard's prefixes serves no record.
    return {r for r in found if not r.startswith(UNSCOPED_PREFIXES) and "^" not in r}


def _state() -> tuple[Any, ...]:
    return (
        sorted(NodeSession.objects.values_list("id", "status", "stop_requested_at")),
        sorted(FederatedRun.objects.values_list("id", "status", "stop_requested_at")),
        sorted(NodeEnrollment.objects.values_list("id", "status")),
    )


def _b_ids(b: dict[str, Any]) -> list[str]:
    return [str(b[k].pk) for k in ("coordinator", "site", "pending", "link", "supernode", "run")]


def _call(client: APIClient, method: str, path: str, data: Any) -> Any:
    if method == "get":
        return client.get(path, data or {})
    return client.post(path, data or {}, format="json")


@pytest.mark.parametrize("who", ["owner", "member"])
def test_no_endpoint_lets_project_a_reach_project_b(who: str, alive: None) -> None:
    world = _world()
    a, b = world["a"], world["b"]
    client = APIClient()
    client.force_authenticate(a[who])
    covered = set()
    for method, path, data, route in _requests(b):
        covered.add(route)
        before = _state()
        response = _call(client, method, path, data)
        assert response.status_code in (403, 404), (who, method, path, response.status_code, response.content[:300])
        assert _state() == before, (who, path)
        # Nothing of B's beyond what the request itself named (a 404 may repeat the id it was given).
        unasked = [i for i in _b_ids(b) if i not in path and i not in str(data)]
        assert not any(i in response.content.decode() for i in unasked), (who, path)
    for method, path, data, route in LISTS:
        covered.add(route)
        response = _call(client, method, path, data)
        assert response.status_code < 500, (path, response.status_code)
        assert not any(i in response.content.decode() for i in [str(b["project"].pk), *_b_ids(b)]), (who, path)
    for method, template, data, route in BROWSE:
        covered.add(route)
        response = _call(client, method, template.format(p=b["project"].pk), data)
        assert response.status_code < 500
        body = response.content.decode()
        secret = [str(b[k].pk) for k in ("coordinator", "site", "pending", "link", "supernode")]
        assert not any(i in body for i in secret), (who, template)
        assert "secret-config-b" not in body and "0.123457" not in body, (who, template)
    covered.discard("")
    assert covered == _routes(), f"routes without an isolation check: {sorted(_routes() - covered)}"


async def _close_code(path: str, user: Any) -> int | None:
    from tests.ws import session_cookie

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    headers.append((b"cookie", f"sessionid={await session_cookie(user)}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=10)
    if not connected:
        return code
    message = await communicator.receive_output(timeout=10)
    await communicator.disconnect()
    return message.get("code") if message["type"] == "websocket.close" else None


@pytest.mark.parametrize("who", ["owner", "member"])
def test_no_socket_lets_project_a_follow_project_b(who: str) -> None:
    world = _world()
    a, b = world["a"], world["b"]
    paths = [
        f"/ws/sessions/{b['link'].pk}/logs/",
        f"/ws/sessions/{b['supernode'].pk}/logs/",
        f"/ws/runs/{b['run'].pk}/logs/",
        f"/ws/projects/{b['project'].pk}/events/",
    ]
    for path in paths:
        # Not found, as over REST: another project's socket does not say that its record exists.
        assert run_bounded(_close_code(path, a[who])) == 4404, (who, path)
    # Its own project's follows are open to it (the check above is not just "everything refused").
    own = f"/ws/runs/{a['run'].pk}/logs/"
    assert run_bounded(_close_code(own, a[who])) is None
