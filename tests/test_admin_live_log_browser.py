"""A real browser (Debian's Chromium, headless, driven by Playwright) follows a run in the admin:
new log lines appear without reloading and the metrics chart gains a point when a round ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from playwright.sync_api import expect, sync_playwright

from tests.stack import ROOT, Stack

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
ARTIFACTS = ROOT / "test-artifacts"


def test_admin_run_page_streams_new_lines_and_grows_the_metrics_chart(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = get_user_model().objects.create_superuser(username="admin", password=None, email="a@example.org")
    # Daphne checks this password: hashed with its hasher, not the tests' fast one (conftest).
    admin.password = make_password("pw-123456-xyz", hasher="pbkdf2_sha256")
    admin.save(update_fields=["password"])
    run_id = stack.start_federation(rounds=2)
    # Playwright's sync API keeps an event loop on this thread; the ORM is done above.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(f"{stack.base_url}/admin/login/?next=/admin/orchestration/federatedrun/{run_id}/change/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "pw-123456-xyz")
        page.click("input[type=submit]")
        page.wait_for_url(f"**/federatedrun/{run_id}/change/")

        lines = page.locator("[data-role=lines] .fedml-line")
        expect(lines.first).to_be_visible(timeout=30_000)
        first_count = lines.count()
        points = page.locator("[data-role=chart] circle")
        first_points = points.count()
        # Without reloading: more lines arrive and a finished round adds a point.
        page.wait_for_function(
            "n => document.querySelectorAll('[data-role=lines] .fedml-line').length > n",
            arg=first_count,
            timeout=60_000,
        )
        page.wait_for_function(
            "n => document.querySelectorAll('[data-role=chart] circle').length > n", arg=first_points, timeout=120_000
        )
        assert "FEDML_METRICS" not in page.locator("[data-role=lines]").inner_text()  # telemetry is no log line
        tags = page.locator("[data-role=lines] .fedml-tag").all_inner_texts()
        assert any(tag.startswith("supernode:") for tag in tags) and "superlink" in tags

        # Search-as-you-type hides the lines that do not match.
        page.fill("[data-role=search]", "aggregate_evaluate")
        visible = page.locator("[data-role=lines] .fedml-line:not(.hidden)")
        expect(visible.first).to_contain_text("aggregate_evaluate")
        assert visible.count() < lines.count()
        page.fill("[data-role=search]", "")
        page.screenshot(path=str(Path(ARTIFACTS) / "admin-run-live-log.png"), full_page=True)
        browser.close()
