"""Property-based fuzzing of every API operation from the OpenAPI schema (schemathesis),
signed in and not: no 5xx at all, and every response conforms to the schema.

Signed in, the fuzz runs against the live stack (Daphne + the supervisor + real Flower), with
a SuperLink already listening: a supervisor is alive, so the documented 503 ("no supervisor")
cannot be the answer, and start requests really start Flower processes.
"""

from __future__ import annotations

import re
import socket
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fedml_site.wsgi import application
from tests.stack import Stack, wait_until


@schemathesis.check
def no_server_error(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool:
    if response.status_code >= 500:
        raise AssertionError(f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text}")
    return True


@pytest.fixture
def api_schema(db: None) -> Iterator[schemathesis.BaseSchema]:
    # As Django's test client does: keep the test's connection (and transaction) across requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def schema_operations(url: str) -> Any:
    return schemathesis.openapi.from_url(url).get_all_operations()


def _fuzz(
    schema: schemathesis.BaseSchema, call: Callable[[schemathesis.Case], schemathesis.Response]
) -> dict[str, Counter[int]]:
    """Every operation of the schema, FUZZ examples each, each response checked; returns the
    statuses seen per operation. (schemathesis' pytest plugin does not run under pytest 9 yet,
    so the operations are driven through Hypothesis here.)"""
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation must be reached at least once: the dashboard's and the control API's.
    assert len(operations) >= 30 and any(o.path.startswith("/api/admin/") for o in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: schemathesis.Case) -> None:
            response = call(case)
            seen[f"{case.method} {case.path}"][response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        run()
    return seen


@pytest.mark.federation
@pytest.mark.django_db(transaction=True)
def test_live_stack_signed_in_answers_no_5xx_conforms_and_really_starts_flower(own_stack: Stack) -> None:
    # Its own stack: the fuzzer starts whatever it generates (SuperNodes aimed at any address,
    # runs, stops in any order), so nothing promises a shared stack could be brought back to rest.
    stack = own_stack
    base = f"http://127.0.0.1:{stack.web_port}"
    status, body = stack.post(
        "/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{stack.superlink_port}"}
    )
    assert status == 201, body
    wait_until(lambda: _listening(stack.superlink_port), timeout=60, message="the SuperLink to listen")
    headers = {"Authorization": f"Bearer {stack.token}"}

    seen = _fuzz(
        schemathesis.openapi.from_url(f"{base}/api/schema/"),
        lambda case: case.call(base_url=base, headers=headers, timeout=60),
    )

    assert len(seen) == len(list(schema_operations(f"{base}/api/schema/")))
    # The fuzz reached the supervisor and Flower, not only the validators.
    assert seen["POST /api/coordinator/runs/start"][201] + seen["POST /api/coordinator/runs/start"][202] >= 1, seen
    assert seen["POST /api/participant/supernode/start"][201] >= 1, seen
    assert seen["POST /api/coordinator/superlink/stop"][200] >= 1, seen


def test_api_anonymous_is_refused_everywhere_and_conforms(api_schema: schemathesis.BaseSchema) -> None:
    seen = _fuzz(api_schema, lambda case: case.call())

    assert len(seen) == len(list(api_schema.get_all_operations()))
    assert {status for statuses in seen.values() for status in statuses} == {401}


def test_a_body_nested_too_deep_gets_the_documented_400_from_every_operation_taking_json(
    api_schema: schemathesis.BaseSchema,
) -> None:
    """Python's JSON parser raises RecursionError (a 500) near 1,000 levels: the API's parser refuses
    JSON nested deeper than FEDML_MAX_JSON_DEPTH first, a 400 each operation documents."""
    from accounts import services as accounts_services
    from tests.factories import staff_api_client

    node = accounts_services.participant_node_ensure()
    ids = {"project_id": str(node.project_id), "node_id": str(node.pk)}
    client = staff_api_client()
    taking_json = [
        (path, operation)
        for path, operations in api_schema.raw_schema["paths"].items()
        for method, operation in operations.items()
        if method == "post" and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(taking_json) >= 10

    for path, operation in taking_json:
        response = client.post(path.format(**ids), b"[" * 2000 + b"]" * 2000, content_type="application/json")  # type: ignore[attr-defined]
        assert response.status_code == 400 and "400" in operation["responses"], (path, response.status_code)
        assert response.json() == {"detail": "body: the body is nested deeper than 32 levels", "field": "body"}


def test_schema_and_its_browsable_ui_are_served_without_signing_in(client: object) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")  # type: ignore[attr-defined]
    assert schema.status_code == 200 and "/api/coordinator/superlink/start" in schema.content.decode()
    ui = client.get("/api/schema/ui/")  # type: ignore[attr-defined]
    assert ui.status_code == 200 and "swagger-ui" in ui.content.decode()
    # Served locally: sites may have no internet. (A bare "cdn" can occur in the page's random CSRF token.)
    assert not re.search(r"(src|href)=[\"'](https?:)?//", ui.content.decode()), (
        "the UI loads an asset from another host"
    )
