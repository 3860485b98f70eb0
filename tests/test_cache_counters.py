"""Window counters (core/counters.py) when the cache cannot be reached: the rate limit waits and
the refusal is recorded, so a Redis outage never turns a request into a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AuditEvent
from core.counters import window_count, window_take
from tests.factories import UserFactory, bearer_client, participant_node_of, project_coordinated_by
from tests.stack import free_port


@pytest.fixture
def dead_cache(settings: Any) -> None:
    """Redis on a port nothing listens on (the real backend, really failing to connect)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }


def test_a_counter_without_a_cache_is_none_and_takes_nothing(dead_cache: None) -> None:
    assert window_count("fedml:rate:test:x", timeout=60) is None
    assert window_take("fedml:audit:test:x") == 0


@pytest.mark.django_db
def test_control_requests_are_served_while_the_cache_is_down(dead_cache: None, settings: Any) -> None:
    settings.RATE_CONTROL = "1/day"
    user = UserFactory(username="member")
    project, _ = project_coordinated_by(UserFactory(username="owner"))
    participant_node_of(user, project)
    client = bearer_client(user)

    answers = [client.post("/api/participant/supernode/stop", {}, format="json").status_code for _ in range(3)]

    assert answers == [409, 409, 409]  # nothing to stop; not 429 (no count), never 500


@pytest.mark.django_db
def test_an_anonymous_refusal_is_recorded_while_the_cache_is_down(dead_cache: None, client: Any) -> None:
    answer = client.get("/api/coordinator/health", REMOTE_ADDR="203.0.113.9")

    assert answer.status_code == 401
    assert AuditEvent.objects.filter(outcome="denied", remote_addr="203.0.113.9").count() == 1
