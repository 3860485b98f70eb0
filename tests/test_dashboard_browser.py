"""The real Next.js dashboard (shared/seed-dashboard), configured only by `.env.local` and `next.config.ts`
(tests/dashboard_kit.py), in Debian's Chromium against a live FedML: Daphne, the supervisor and real Flower on
PostgreSQL, with FedML's embedded Supabase Auth. A coordinator and a participant, each in a browser context of
their own, go from signing in to a finished run, whose log the run page follows live over FedML's websocket with
docs/fedml-stream.js and the signed-in user's Supabase session. docs/dashboard.md describes the same set-up.

Screenshots of every page visited go to test-artifacts/dashboard/. Any failed request of a page, and any console
error FedML could have caused, fails the test (see IGNORED_CONSOLE and IGNORED_FAILURES for the exceptions).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from playwright.sync_api import Page, Response, expect, sync_playwright

from tests import dashboard_kit as kit
from tests.stack import ROOT, Stack, database_url, free_port, free_ports, postgres_database, start_stack

# The database mark makes pytest-django set up the suite's test database (it only does for tests that ask);
# this test uses it when it is PostgreSQL, and a throwaway PostgreSQL database otherwise (fedml_database).
pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
STREAM_JS = ROOT / "docs" / "fedml-stream.js"
PASSWORD = "pw-dashboard-123456"
COORDINATOR = "coordinator@example.org"
PARTICIPANT = "participant@example.org"
UI = 300_000  # ms for anything that may wait on `next dev` compiling a page (2 shared cores)
RUN_TIMEOUT = 900  # s for a 2-round run with one SuperNode
PAGES = [  # compiled before the browser comes (a route compiles once, whatever its ids)
    "/admin/projects",
    "/admin/projects/{id}/control-panel",
    "/client",
    "/client/{id}",
    "/admin/projects/{id}/runs/{id}",
    "/admin/projects/{id}/runs",
]

# Console errors that are the dashboard's own, whatever its backend: (pattern, why it is not FedML's doing).
IGNORED_CONSOLE: list[tuple[re.Pattern[str], str]] = [
    # React's development build warns through console.error about the dashboard's own markup
    # (keys, nesting, hydration of client-only values such as relative times); none involves a response.
    (re.compile(r"^Warning: |hydrat|Each child in a list should have a unique"), "React dev-mode warning"),
    # The sign-in page's background, `bg-[url('/grid.svg')]`: the seed dashboard's public/ holds only logo/.
    (re.compile(r"^Failed to load resource: .* 404 .* http://[^/]+/grid\.svg$"), "the dashboard ships no /grid.svg"),
    # next dev's hot-reload socket; nothing to do with FedML, which the browser never reaches directly.
    (re.compile(r"webpack-hmr|_next/webpack"), "next dev's hot-module-reload channel"),
]
# Failed requests that are not failures: (pattern on "<url> <error text>", why).
IGNORED_FAILURES: list[tuple[re.Pattern[str], str]] = [
    # The browser cancels a request when the page navigates away (React Query polls every few seconds, and
    # Next prefetches links): nobody answered, so there is nothing FedML did.
    (re.compile(r"net::ERR_ABORTED"), "cancelled by the browser on navigation"),
    # next dev's hot-reload event stream is cut when a context closes.
    (re.compile(r"/_next/webpack-hmr"), "next dev's hot-module-reload channel"),
]


class Watch:
    """What went wrong on the pages: failed FedML calls (status >= 400 on the dashboard's /api/ and /auth/v1/,
    which are FedML's), failed requests, console errors and uncaught exceptions."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []
        self.calls: list[str] = []  # every FedML call the pages made, for the report

    def attach(self, page: Page, who: str) -> None:
        page.on("response", lambda response: self._response(who, response))
        page.on("requestfailed", lambda request: self._failed(who, request.url, request.failure or ""))
        page.on("console", lambda msg: self._console(who, msg.type, msg.text, msg.location.get("url", "")))
        page.on("pageerror", lambda error: self.problems.append(f"{who}: uncaught {error}"))

    def _response(self, who: str, response: Response) -> None:
        parts = urlsplit(response.url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin or not parts.path.startswith(("/api/", "/auth/v1/")):
            return
        call = f"{response.request.method} {parts.path}{'?' + parts.query if parts.query else ''}"
        self.calls.append(f"{who}: {call} -> {response.status}")
        if response.status >= 400:
            try:
                body = response.text()[:400]
            except Exception as exc:  # noqa: BLE001 - the body may be gone after a navigation
                body = f"(body unavailable: {exc})"
            self.problems.append(f"{who}: {call} -> {response.status} {body}")

    def _failed(self, who: str, url: str, error: str) -> None:
        if not any(pattern.search(f"{url} {error}") for pattern, _ in IGNORED_FAILURES):
            self.problems.append(f"{who}: request failed: {url} {error}")

    def _console(self, who: str, kind: str, text: str, where: str) -> None:
        if kind == "error" and not any(pattern.search(f"{text} {where}") for pattern, _ in IGNORED_CONSOLE):
            self.problems.append(f"{who}: console error: {text} ({where})")


def api(stack: Stack, token: str, path: str) -> Any:
    """GET a FedML path directly (not through the dashboard) with a Supabase access token."""
    req = urllib.request.Request(stack.base_url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - our own loopback server
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"GET {path} -> {exc.code} {exc.read()[:400]!r}") from None


def poll(page: Page, predicate: Callable[[], Any], *, timeout: float, message: str) -> Any:
    """tests.stack.wait_until, but waiting through Playwright so that the pages' events keep being handled."""
    for _ in range(int(timeout / 0.5) + 1):
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(500)
    raise AssertionError(f"timed out after {timeout}s: {message}")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, dashboard: str, email: str, next_path: str) -> str:
    """Sign in on /signin; returns the access token of the session @supabase/ssr stored in its cookie."""
    page.goto(f"{dashboard}/signin?next={next_path}", timeout=UI)
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    shot(page, f"signin-{email.split('@')[0]}")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{dashboard}{next_path}", timeout=UI)
    cookies = {c["name"]: c["value"] for c in page.context.cookies(dashboard)}
    session = kit.decode_session_cookie(cookies, kit.session_cookie_name(dashboard))
    assert session and session["user"]["email"] == email, cookies.keys()
    # The sidebar shows the user once the dashboard's useUser() has it, which the forms below rely on.
    expect(page.get_by_text(email).first).to_be_visible(timeout=UI)
    return session["access_token"]


@contextlib.contextmanager
def fedml_database() -> Iterator[str]:
    """The suite's test database when it is PostgreSQL, else a throwaway PostgreSQL database of this test's own."""
    if connection.vendor == "postgresql":
        yield database_url()
        return
    with postgres_database() as url:
        yield url


def test_dashboard_drives_a_federation_on_fedml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash_port = free_port()
    dashboard = kit.dashboard_url(dash_port)
    superlink_ports = free_ports(8)
    with contextlib.ExitStack() as cleanup:
        db_url = cleanup.enter_context(fedml_database())
        env = {
            "DATABASE_URL": db_url,
            "FEDML_EMBEDDED_AUTH": "true",
            "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
            "SUPABASE_URL": dashboard,  # FedML reads this project's cookie: sb-localhost-auth-token
            "FEDML_DASHBOARD_ORIGINS": dashboard,
            "FEDML_SUPERLINK_PORT_RANGE": f"{superlink_ports}-{superlink_ports + 7}",
        }
        if connection.vendor != "postgresql":  # a throwaway database: empty
            migrate = [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"]
            done = subprocess.run(migrate, env=os.environ | env, cwd=ROOT, capture_output=True, text=True, timeout=900)  # noqa: S603
            assert done.returncode == 0, done.stdout + done.stderr
        stack = start_stack(tmp_path / "fedml", env)
        cleanup.callback(stack.close)
        for email, name in ((COORDINATOR, "Coordinator"), (PARTICIPANT, "Participant")):
            stack.manage("user_create", "--email", email, "--display-name", name, "--password-stdin", input=PASSWORD)

        frontend = kit.prepare_dashboard(
            tmp_path / "dashboard", fedml_url=stack.base_url, dashboard_port=dash_port, anon_key="fedml-anon-key"
        )
        next_log = tmp_path / "dashboard" / "next-dev.log"
        next_dev = kit.start_dashboard(frontend, dash_port, log_path=next_log)
        cleanup.callback(kit.stop_dashboard, next_dev)
        kit.wait_dashboard_ready(f"{dashboard}/signin", timeout=600, proc=next_dev, log_path=next_log)
        for path in PAGES:
            kit.wait_dashboard_ready(dashboard + path.format(id="00000000-0000-0000-0000-000000000000"), timeout=600)

        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs on this thread
        playwright = cleanup.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        cleanup.callback(browser.close)
        watch = Watch(dashboard)
        try:
            walk(stack, dashboard, browser, watch)
        finally:
            print("FedML calls made by the pages:\n" + "\n".join(sorted(set(watch.calls))))
        assert not watch.problems, "\n".join(watch.problems)


def walk(stack: Stack, dashboard: str, browser: Any, watch: Watch) -> None:
    viewport = {"width": 1440, "height": 1600}
    coordinator = browser.new_context(viewport=viewport).new_page()
    watch.attach(coordinator, "coordinator")
    participant = browser.new_context(viewport=viewport).new_page()
    watch.attach(participant, "participant")

    # --- the coordinator creates a project and starts its SuperLink
    coordinator_token = sign_in(coordinator, dashboard, COORDINATOR, "/admin/projects")
    coordinator.get_by_role("button", name="New project").click()
    coordinator.get_by_label("Project name").fill("Browser federation")
    coordinator.get_by_label("Description (optional)").fill("Made by tests/test_dashboard_browser.py")
    shot(coordinator, "admin-projects-new")
    with coordinator.expect_response(
        lambda r: urlsplit(r.url).path == "/api/admin/projects" and r.request.method == "POST", timeout=UI
    ) as created:
        coordinator.get_by_role("button", name="Register coordinator").click()
    assert created.value.status == 201, created.value.text()
    project = created.value.json()["project"]
    project_id = project["id"]
    expect(coordinator.get_by_text("Browser federation").first).to_be_visible(timeout=UI)
    shot(coordinator, "admin-projects")
    # One SuperNode will take part: the app's defaults ask for two nodes and five rounds.
    stack.manage("project_run_config", "--project", project["slug"], "min-nodes=1", "num-server-rounds=2")

    coordinator.get_by_role("link", name="Control panel").first.click()
    coordinator.wait_for_url(f"**/admin/projects/{project_id}/control-panel", timeout=UI)
    start_superlink = coordinator.get_by_role("button", name="Start SuperLink")
    expect(start_superlink).to_be_enabled(timeout=UI)
    with coordinator.expect_response(lambda r: r.url.endswith("/api/coordinator/superlink/start"), timeout=UI) as sl:
        start_superlink.click()
    assert sl.value.status == 201, sl.value.text()
    health = api(stack, coordinator_token, f"/api/coordinator/health?project_id={project_id}")
    assert health["superlink_running"] and health["active_project_id"] == project_id, health
    superlink_address = health["superlink_address"]
    expect(coordinator.get_by_text("SuperLink • Active")).to_be_visible(timeout=UI)
    shot(coordinator, "admin-control-panel-superlink")

    # --- the participant joins and starts a SuperNode
    participant_token = sign_in(participant, dashboard, PARTICIPANT, "/client")
    card = participant.locator("div", has=participant.get_by_text("Browser federation")).filter(
        has=participant.get_by_role("button", name="Join Project")
    )
    shot(participant, "client")
    with participant.expect_response(lambda r: r.url.endswith(f"/projects/{project_id}/join"), timeout=UI) as joined:
        card.last.get_by_role("button", name="Join Project").click()
    assert joined.value.status == 201, joined.value.text()
    participant.wait_for_url(f"**/client/{project_id}", timeout=UI)
    expect(participant.get_by_text("External ID:").first).to_be_visible(timeout=UI)  # its node is listed
    participant.get_by_label("SuperLink address").fill(superlink_address)
    participant.get_by_label("Client API address").fill("")  # FedML picks a free port (the form says 0.0.0.0:9094)
    participant.get_by_label("Partition ID").fill("0")
    participant.get_by_label("Number of partitions").fill("1")
    with participant.expect_response(lambda r: r.url.endswith("/api/participant/supernode/start"), timeout=UI) as sn:
        participant.get_by_role("button", name="Start SuperNode").click()
    assert sn.value.status == 201, sn.value.text()
    site = api(stack, participant_token, f"/api/participant/health?project_id={project_id}")
    assert site["supernode_running"], site
    expect(participant.get_by_text("SuperNode online")).to_be_visible(timeout=UI)
    shot(participant, "client-project-supernode")

    # --- the coordinator starts a run on the control panel, and the run page follows it live
    start_run = coordinator.get_by_role("button", name="Start Run")
    expect(start_run).to_be_enabled(timeout=UI)
    with coordinator.expect_response(lambda r: r.url.endswith("/api/coordinator/runs/start"), timeout=UI) as started:
        start_run.click()
    assert started.value.status in (201, 202), started.value.text()
    run_id = started.value.json()["run_id"]
    shot(coordinator, "admin-control-panel-run")
    coordinator.goto(f"{dashboard}/admin/projects/{project_id}/runs/{run_id}", timeout=UI)
    expect(coordinator.get_by_role("link", name="Back to Browser federation runs")).to_be_visible(timeout=UI)
    follow_live_log(coordinator, stack, coordinator_token, run_id)

    def finished() -> dict[str, Any] | None:
        run = api(stack, coordinator_token, f"/api/coordinator/runs/{run_id}")
        return run if run["status"] not in ("requested", "starting", "running", "stopping") else None

    run = poll(coordinator, finished, timeout=RUN_TIMEOUT, message=f"run {run_id} finished")
    assert run["status"] == "completed", run
    check_live_log(coordinator, stack, coordinator_token, run_id)
    shot(participant, "client-project-after-run")

    coordinator.reload(timeout=UI)
    expect(coordinator.get_by_text("completed").first).to_be_visible(timeout=UI)
    for round_number in (1, 2):
        expect(coordinator.get_by_text(f"Round {round_number}").first).to_be_visible(timeout=UI)
    # The metrics card shows run.metrics, {phase: {round: {name: value}}}, a name as "Title Case".
    metrics = run["metrics"] or {}
    assert metrics.get("last_round") == metrics.get("num_rounds") == 2, metrics
    phases = {phase: sorted(rounds, key=int) for phase, rounds in metrics.items() if isinstance(rounds, dict)}
    assert phases and all(rounds == ["1", "2"] for rounds in phases.values()), metrics
    metric = sorted(metrics[sorted(phases)[0]]["2"])[0]
    expect(coordinator.get_by_text(re.sub(r"[_-]+", " ", metric)).first).to_be_visible(timeout=UI)
    shot(coordinator, "admin-run")

    coordinator.goto(f"{dashboard}/admin/projects/{project_id}/runs", timeout=UI)
    expect(coordinator.locator(f"a[href$='/runs/{run_id}']").first).to_be_visible(timeout=UI)
    shot(coordinator, "admin-runs")


def follow_live_log(page: Page, stack: Stack, token: str, run_id: str) -> None:
    """On the dashboard's run page, follow the run's log at FedML's websocket with docs/fedml-stream.js and the
    Supabase session the page's cookie holds; the run is still live once the socket is open."""
    ws_url = f"ws://127.0.0.1:{stack.web_port}/ws/runs/{run_id}/logs/"
    harness = f"""
const state = (window.__fedml = {{ lines: [], statuses: [], ends: [], token: supabaseAccessToken() }});
state.stop = followFedML({json.dumps(ws_url)}, {{
  getToken: async () => supabaseAccessToken(),
  onLines: (follow, lines) => lines.forEach((l) => state.lines.push({{ follow, seq: l.seq, text: l.text }})),
  onEnd: (follow, status) => state.ends.push({{ follow, status }}),
  onStatus: (status) => state.statuses.push(status),
}});
"""
    page.add_script_tag(content=STREAM_JS.read_text() + harness, type="module")
    page.wait_for_function("() => window.__fedml && window.__fedml.statuses.includes('open')", timeout=60_000)
    assert page.evaluate("window.__fedml.token") == token  # the cookie's session, read by supabaseAccessToken
    run = api(stack, token, f"/api/coordinator/runs/{run_id}")
    assert run["status"] in ("starting", "running"), f"the run ended before the page followed it: {run['status']}"
    page.wait_for_function(
        f"() => window.__fedml.lines.some((l) => l.follow === 'run:{run_id}')", timeout=RUN_TIMEOUT * 1000
    )
    shot(page, "admin-run-live")


def check_live_log(page: Page, stack: Stack, token: str, run_id: str) -> None:
    """Every line of the run's own log came over the websocket, in order, up to the last one FedML stored."""
    follow = f"run:{run_id}"
    page.wait_for_function(
        f"() => window.__fedml.ends.some((e) => e.follow === {json.dumps(follow)})", timeout=RUN_TIMEOUT * 1000
    )
    state = page.evaluate("window.__fedml")
    seqs = [line["seq"] for line in state["lines"] if line["follow"] == follow]
    stored = api(stack, token, f"/api/coordinator/runs/{run_id}/logs?limit=5000")["lines"]
    assert seqs and stored, (state["statuses"], len(stored))
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "lines out of order or repeated"
    assert seqs[-1] == stored[-1]["seq"] == len(stored), (seqs[-1], stored[-1]["seq"], len(stored))
    assert any(e["follow"] == follow and e["status"] == "completed" for e in state["ends"]), state["ends"]
    assert not any(s.startswith("closed 44") for s in state["statuses"]), state["statuses"]
