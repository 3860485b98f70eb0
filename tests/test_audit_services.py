"""Refusals are audited, anonymous ones in bounded numbers per client address and window (HTTP and
websockets together), the ones left out counted and reported on the address's next row."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connection after each call
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from accounts.services import audit
from accounts.services.audit import ANONYMOUS_ROWS_PER_WINDOW, audit_refusal_record
from orchestration import consumers
from tests.factories import FederatedRunFactory, UserFactory
from tests.ws import connect

LIMIT = ANONYMOUS_ROWS_PER_WINDOW


def _refused(address: str, times: int, path: str = "/api/coordinator/health") -> None:
    client = APIClient()
    for _ in range(times):
        assert client.get(path, REMOTE_ADDR=address).status_code == 401


def _denied(address: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(outcome="denied", remote_addr=address).order_by("at", "pk"))


@pytest.mark.django_db
def test_anonymous_refusals_from_one_address_write_at_most_the_window_limit() -> None:
    _refused("203.0.113.7", LIMIT + 25)
    rows = _denied("203.0.113.7")
    assert len(rows) == LIMIT
    assert all(row.actor_label == "anonymous" and row.via == "api" for row in rows)
    assert "counted, not recorded" in rows[-1].detail["limit"]
    assert all("limit" not in row.detail for row in rows[:-1])


@pytest.mark.django_db
def test_the_next_windows_first_row_reports_how_many_were_left_out() -> None:
    _refused("203.0.113.7", LIMIT + 25)
    cache.delete(audit.anonymous_window_key("203.0.113.7"))  # the window ends: its counter expires
    _refused("203.0.113.7", 2, path="/api/participant/health")
    rows = _denied("203.0.113.7")
    assert len(rows) == LIMIT + 2
    assert rows[LIMIT].detail["suppressed_before"] == 25 and rows[LIMIT].target == "/api/participant/health"
    assert "suppressed_before" not in rows[LIMIT + 1].detail  # reported once


@pytest.mark.django_db
def test_paths_do_not_reset_the_limit_but_another_address_has_its_own() -> None:
    _refused("203.0.113.7", LIMIT)
    _refused("203.0.113.7", 5, path="/api/participant/supernodes")
    _refused("198.51.100.9", 3, path="/api/participant/supernodes")
    assert len(_denied("203.0.113.7")) == LIMIT
    assert len(_denied("198.51.100.9")) == 3


@pytest.mark.django_db
def test_a_signed_in_callers_refusals_are_each_recorded() -> None:
    user = UserFactory()
    for _ in range(LIMIT + 5):
        audit_refusal_record(actor=user, action="superlink.start", remote_addr="203.0.113.7", via="api")
    rows = _denied("203.0.113.7")
    assert len(rows) == LIMIT + 5 and {row.actor_id for row in rows} == {user.pk}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_anonymous_websocket_refusals_share_their_addresses_limit() -> None:
    run = await sync_to_async(FederatedRunFactory)(status="running")
    path = f"/ws/runs/{run.pk}/logs/"
    # The test communicator has no client address: these refusals count under "".
    ws, _, _ = await connect(path)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
    for _ in range(LIMIT - 1):
        await sync_to_async(audit_refusal_record)(actor=None, action="GET /x", remote_addr="", via="api")
    ws, _, _ = await connect(path)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
    rows = await sync_to_async(_denied)("")
    assert len(rows) == LIMIT
    assert [row.via for row in rows].count("websocket") == 1
