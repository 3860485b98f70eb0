"""The authorization matrix: every API endpoint and every websocket route x anonymous, no role,
participant of A, participant of B, coordinator of A, coordinator of B and staff, aimed at project
A's records while project B is as live as A. The expected status of every cell is written out in
tests/authz_matrix_table.py; the routes are read from the URL resolver and orchestration/routing.py,
so an endpoint without a row there fails. A refusal changes nothing, and no answer carries what the
caller may not see of another project (its run's label, config, metrics, log lines, node and session
ids), nor a participant another node's SuperLink log or per-node metrics.

The fast tier builds both projects with services and factories (live SuperLink and SuperNode
sessions, a running run with log lines and round metrics, an enrolled site); the federation test at
the end probes the key cells against two projects made live on real Flower."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts.services import api_token_create, project_create, project_join
from fedml_site.asgi import application
from orchestration import routing, services
from orchestration.models import FederatedRun, LogLine, NodeSession
from tests.authz_kit import SECRETS, Snapshot, leaks, make_world, public_key, restore, snapshot
from tests.authz_matrix_table import BROWSE, HTTP, IDENTITIES, JOINS, NOT_API, STANDING, WEBSOCKETS, fill
from tests.event_loops import run_bounded
from tests.factories import UserFactory, participant_node_of, person_of
from tests.stack import Stack, wait_until

ROOT = Path(__file__).resolve().parent.parent
REFUSED = (401, 403, 404)


def _http_routes() -> set[str]:
    found: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                found.add(prefix + str(entry.pattern))

    walk(get_resolver().url_patterns, "")
    return {route for route in found if not route.startswith(NOT_API)}


def _ws_routes() -> set[str]:
    return {str(entry.pattern) for entry in routing.websocket_urlpatterns}


def _call(client: APIClient, method: str, path: str, data: Any) -> Any:
    if method == "get":
        return client.get(path, data or {})
    return client.post(path, data or {}, format="json")


@pytest.fixture
def world(settings: Any, tmp_path: Path) -> dict[str, Any]:
    settings.DATA_DIR = tmp_path / "var"  # SuperNode keys land here
    settings.START_WAIT_SECONDS = 0.05  # no supervisor runs: what is allowed answers once its wait ends
    settings.SUPERVISOR_STALE_SECONDS = 10**6  # the heartbeat row stays fresh however long the matrix takes
    return make_world()


@pytest.mark.django_db
def test_every_endpoint_gives_every_identity_the_status_in_the_table_and_refusals_change_and_leak_nothing(
    world: dict[str, Any], settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = _http_routes()
    missing = routes - {row[0] for row in HTTP}
    assert not missing, f"endpoints without a row in tests/authz_matrix_table.py: {sorted(missing)}"
    unknown = {row[0] for row in HTTP} - routes
    assert not unknown, f"rows for routes that no longer exist: {sorted(unknown)}"

    wrong: list[str] = []
    shown_to_coordinator_a = []
    for route, method, template, data_template, expected in HTTP:
        path, data = fill(template, world["ids"]), fill(data_template, world["ids"])
        for identity, want in zip(IDENTITIES, expected, strict=True):
            before: Snapshot = snapshot(settings.DATA_DIR)
            response = _call(world["clients"][identity], method, path, data)
            body = response.content.decode(errors="replace")
            cell = f"{identity:14} {method.upper():4} {path}"
            if response.status_code != want:
                wrong.append(f"{cell}: expected {want}, got {response.status_code} {body[:200]}")
            after = snapshot(settings.DATA_DIR)
            if response.status_code in REFUSED and after != before:
                wrong.append(f"{cell}: refused ({response.status_code}) but changed {after.diff(before)}")
            if route not in JOINS and response.status_code not in REFUSED:
                # Of A and B (a staff read may create the default project: FedML's own, not theirs).
                changed = after.projects_changed(before) & (world["project_ids"] - world["standing_ids"][identity])
                if changed:
                    wrong.append(f"{cell}: changed projects it has no standing in: {sorted(changed)}")
            wrong += [f"{cell}: {leak}" for leak in leaks(world, identity, route in BROWSE, path, data, body, response)]
            restore(before, settings.DATA_DIR)
            if identity == "coordinator_a":
                shown_to_coordinator_a.append(body)
    # The leak check looks for words the answers really carry: A's coordinator is shown every one.
    unseen = [word for word in SECRETS["a"].values() if word not in "".join(shown_to_coordinator_a)]
    assert not unseen, f"the world's secrets never appear, so their absence proves nothing: {unseen}"

    cells = len(HTTP) * len(IDENTITIES)
    with capsys.disabled():
        print(
            f"\nauthorization matrix (HTTP): {len(routes)} endpoints, {len(HTTP)} requests x "
            f"{len(IDENTITIES)} identities = {cells} cells"
        )
    assert not wrong, f"{len(wrong)} of {cells} cells wrong:\n" + "\n".join(wrong)


async def _socket(path: str, token: str | None) -> tuple[int | None, dict[str, Any] | None]:
    """(close code, None) for a refused socket; (None, hello) for an accepted one."""
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    subprotocols = ["fedml", f"bearer.{token}"] if token else None
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
    connected, code = await communicator.connect(timeout=10)
    if not connected:
        return code, None
    try:
        message = await communicator.receive_output(timeout=10)
    finally:
        # Always: a consumer left running when this loop closes would be cancelled mid-await.
        await communicator.disconnect()
    if message["type"] == "websocket.close":
        return message.get("code"), None
    return None, message


@pytest.mark.django_db(transaction=True)
def test_every_socket_gives_every_identity_the_close_code_in_the_table(
    world: dict[str, Any], settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = _ws_routes() - {row[0] for row in WEBSOCKETS}
    assert not missing, f"websocket routes without a row in tests/authz_matrix_table.py: {sorted(missing)}"
    wrong: list[str] = []
    for _, _, template, _, expected in WEBSOCKETS:
        path = fill(template, world["ids"])
        for identity, want in zip(IDENTITIES, expected, strict=True):
            before = snapshot(settings.DATA_DIR)
            code, hello = run_bounded(_socket(path, world["tokens"].get(identity)))
            if code != want:
                wrong.append(f"{identity:14} {path}: expected {want}, got {code}")
            if hello is not None and json.loads(hello.get("text") or "{}").get("type") != "hello":
                wrong.append(f"{identity:14} {path}: accepted without a hello: {hello}")
            if code is not None and snapshot(settings.DATA_DIR) != before:
                wrong.append(f"{identity:14} {path}: refused but changed something")
    cells = len(WEBSOCKETS) * len(IDENTITIES)
    with capsys.disabled():
        print(
            f"\nauthorization matrix (websockets): {len(_ws_routes())} routes, {len(WEBSOCKETS)} sockets x "
            f"{len(IDENTITIES)} identities = {cells} cells"
        )
    assert not wrong, "\n".join(wrong)


# ----------------------------------------------------------------- every id lookup names the caller's scope
SCOPED_LOOKUPS = {"run_get", "session_get", "node_get", "project_get"}
TRUSTED = ("orchestration/supervisor/",)  # serves every project; relies on the selectors' default


def _called(call: ast.Call) -> str:
    """The function a call calls: `f(...)`, `x.f(...)`, or `database_sync_to_async(x.f)(...)`."""
    func = call.func
    if isinstance(func, ast.Call) and func.args:
        func = func.args[0]
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def test_every_lookup_by_id_outside_the_supervisor_names_the_projects_it_may_find() -> None:
    unscoped = []
    for app in ("accounts", "orchestration", "participants", "portal", "fedml_site"):
        for source in sorted((ROOT / app).rglob("*.py")):
            relative = source.relative_to(ROOT).as_posix()
            if relative.startswith(TRUSTED) or "/migrations/" in relative:
                continue
            for node in ast.walk(ast.parse(source.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = _called(node)
                if name in SCOPED_LOOKUPS and not {"projects", "project"} & {k.arg for k in node.keywords}:
                    unscoped.append(f"{relative}:{node.lineno} {name}(...)")
    assert not unscoped, "lookups by id without the caller's projects=...:\n" + "\n".join(unscoped)


# ----------------------------------------------------------------- the key cells, on real Flower
KEY_ROUTES = {
    "api/coordinator/runs/<uuid:run_id>",
    "api/coordinator/runs/<uuid:run_id>/logs",
    "api/coordinator/sessions/<uuid:session_id>/logs",
    "api/coordinator/nodes/<uuid:node_id>/enroll",
    "api/coordinator/nodes/<uuid:node_id>/revoke",
}


def _as(stack: Stack, user: Any) -> Stack:
    return dataclasses.replace(stack, token=api_token_create(user=user, name="matrix", actor="t", via="t")[1])


def _live(stack: Stack, name: str) -> dict[str, Any]:
    """Project `name` made live through the API: its SuperLink, its site's SuperNode, a one-round run."""
    coordinator_user, participant_user = UserFactory(username=f"live-{name}-c"), UserFactory(username=f"live-{name}-p")
    project, _ = project_create(owner=person_of(coordinator_user), name=f"Live {name}", actor="t", via="t")
    site, _ = project_join(project=project, person=person_of(participant_user), actor="t", via="t")
    services.project_run_config_set(
        project=project, values={"min-nodes": "1", "num-server-rounds": "1"}, actor="t", via="t"
    )
    coordinator, participant = _as(stack, coordinator_user), _as(stack, participant_user)
    status, link = coordinator.post("/api/coordinator/superlink/start", {"project_id": str(project.pk)})
    assert status == 201, link
    status, supernode = participant.post("/api/participant/supernode/start", {"node_id": str(site.pk)})
    assert status == 201, supernode
    body = {"project_id": str(project.pk), "label": f"live-label-{name}"}
    status, run = coordinator.post("/api/coordinator/runs/start", body)
    assert status in (201, 202), run  # 202: claimed while the new SuperLink does not accept connections yet
    ids = {"P": str(project.pk), "RUN": run["run_id"], "LINK": link["session_id"], "SN": supernode["session_id"]}
    ids |= {"SITE": str(site.pk), "SITE2": str(participant_node_of(UserFactory(), project).pk)}
    return {"project": project, "ids": ids, "clients": {"coordinator": coordinator, "participant": participant}}


@pytest.mark.federation
def test_the_key_cells_hold_against_two_projects_live_on_real_flower(stack: Stack) -> None:
    a, b = _live(stack, "a"), _live(stack, "b")
    runs = [a["ids"]["RUN"], b["ids"]["RUN"]]
    wait_until(
        lambda: not FederatedRun.objects.filter(pk__in=runs, ended_at__isnull=True).exists(),
        timeout=420,
        interval=1,
        message="both runs ended",
    )
    for world in (a, b):  # live: SuperLink and SuperNode still running, the run's log and metrics saved
        run = FederatedRun.objects.get(pk=world["ids"]["RUN"])
        assert run.status == "completed" and run.flower_run_id, run.status_detail
        assert run.metrics.get("num_rounds") == 1 and LogLine.objects.filter(run=run).exists()
        live = NodeSession.objects.filter(pk__in=[world["ids"]["LINK"], world["ids"]["SN"]], status="running")
        assert live.count() == 2
    clients = {
        "anonymous": dataclasses.replace(stack, token=""),
        "no_role": _as(stack, UserFactory(username="live-no-role")),
        "participant_a": a["clients"]["participant"],
        "participant_b": b["clients"]["participant"],
        "coordinator_a": a["clients"]["coordinator"],
        "coordinator_b": b["clients"]["coordinator"],
        "staff": _as(stack, UserFactory(username="live-staff", is_staff=True)),
    }
    run_a = FederatedRun.objects.get(pk=a["ids"]["RUN"])
    # What only A's records hold: its label, Flower's run id for it, its nodes and sessions.
    secrets_a = [run_a.label, run_a.flower_run_id, a["ids"]["LINK"], a["ids"]["SN"], a["ids"]["SITE"]]
    ids = a["ids"] | {"KEY": public_key()}
    data_dir = Path(stack.env["FEDML_DATA_DIR"])
    wrong, cells = [], 0
    for route, method, template, data_template, expected in HTTP:
        if route not in KEY_ROUTES:
            continue
        path, data = fill(template, ids), fill(data_template, ids)
        for identity, want in zip(IDENTITIES, expected, strict=True):
            if method == "post" and want not in REFUSED:
                continue  # an allowed write would stop or change A's live federation: the fast tier has those
            cells += 1
            before = snapshot(data_dir)
            status, body = clients[identity].request(method.upper(), path, data if method == "post" else None)
            text = json.dumps(body)
            if status != want:
                wrong.append(f"{identity:14} {method.upper()} {path}: expected {want}, got {status} {text[:200]}")
            if status in REFUSED and snapshot(data_dir) != before:
                wrong.append(f"{identity:14} {path}: refused but changed something")
            if "a" not in STANDING[identity]:
                shown = [s for s in secrets_a if s in text and s not in path]
                if shown:
                    wrong.append(f"{identity:14} {path}: shows A's {shown}")
    for _, _, template, _, expected in WEBSOCKETS:
        path = fill(template, ids)
        for identity, want in zip(IDENTITIES, expected, strict=True):
            cells += 1
            code, _ = run_bounded(_socket(path, clients[identity].token or None))
            if code != want:
                wrong.append(f"{identity:14} {path}: expected {want}, got {code}")
    print(f"\nauthorization matrix on real Flower: {cells} key cells")
    assert not wrong, "\n".join(wrong)
