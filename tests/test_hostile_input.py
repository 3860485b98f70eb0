"""A corpus of hostile payloads against the running stack: each refused with a 400 naming the
field, nothing written and no process started."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.conf import settings

from accounts.models import Node, Project
from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from tests.stack import Stack

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]

SUPERLINK = "/api/coordinator/superlink/start"
SUPERNODE = "/api/participant/supernode/start"
RUN = "/api/coordinator/runs/start"

CORPUS: list[tuple[str, object, str]] = [
    # shell metacharacters: there is no shell, and the values are checked anyway
    (SUPERLINK, {"listen_address": "127.0.0.1:9191; rm -rf /"}, "listen_address"),
    (SUPERLINK, {"listen_address": "$(reboot):9191"}, "listen_address"),
    (SUPERLINK, {"extra_args": ["--isolation", "subprocess && curl evil"]}, "extra_args"),
    (SUPERNODE, {"superlink_address": "`id`:9191"}, "superlink_address"),
    (SUPERNODE, {"extra_args": ["--max-retries", "3|sh"]}, "extra_args"),
    (RUN, {"extra_args": ["--run-config", 'strategy="x";touch /tmp/pwn']}, "extra_args"),
    (RUN, {"federation_name": "prod;ls"}, "federation_name"),
    # flags that would let a caller point Flower at arbitrary files or ports
    (SUPERLINK, {"extra_args": ["--database", "/etc/passwd"]}, "extra_args"),
    (SUPERLINK, {"extra_args": ["--database=/etc/passwd"]}, "extra_args"),
    (SUPERLINK, {"extra_args": ["--ssl-keyfile", "/etc/shadow"]}, "extra_args"),
    (SUPERNODE, {"extra_args": ["--auth-supernode-private-key", "/root/.ssh/id_ecdsa"]}, "extra_args"),
    (SUPERNODE, {"extra_args": ["--superlink", "10.0.0.1:9092"]}, "extra_args"),
    (RUN, {"extra_args": ["--run-config", 'current-run-id="hijack"']}, "extra_args"),
    (RUN, {"extra_args": ["--run-config", 'artifact-dir="/etc"']}, "extra_args"),
    (RUN, {"extra_args": ["--format", "json"]}, "extra_args"),
    # path traversal
    (SUPERLINK, {"insecure": False, "certificates_path": "../../../../etc"}, "certificates_path"),
    (SUPERLINK, {"insecure": False, "certificates_path": "/etc/ssl"}, "certificates_path"),
    (SUPERNODE, {"insecure": False, "certificates_path": "../../var/../../etc/passwd"}, "certificates_path"),
    # wrong types
    (SUPERLINK, {"insecure": "false"}, "insecure"),
    (SUPERLINK, {"extra_args": "--isolation subprocess"}, "extra_args"),
    (SUPERLINK, {"extra_args": [["--isolation"]]}, "extra_args"),
    (SUPERNODE, {"partition_id": "0"}, "partition_id"),
    (SUPERNODE, {"partition_id": 1.5}, "partition_id"),
    (SUPERNODE, {"partition_id": -1}, "partition_id"),
    (SUPERNODE, {"num_partitions": 10**12}, "num_partitions"),
    (RUN, {"stream": "yes"}, "stream"),
    (RUN, {"federation_name": 7}, "federation_name"),
    (RUN, {"extra_args": ["--run-config", "num-server-rounds=1e9"]}, "extra_args"),
    (SUPERLINK, [], "body"),
    (SUPERLINK, "start it", "body"),
    (SUPERLINK, {"insecure": True, "unexpected": 1}, "unexpected"),
    # unicode look-alikes and control characters
    (SUPERLINK, {"listen_address": "127.0.0.1:\uff19\uff11\uff19\uff11"}, "listen_address"),
    (SUPERLINK, {"listen_address": "127.0.0.1\u202e:9191"}, "listen_address"),
    (SUPERNODE, {"clientappio_api_address": "127.0.0.1:94\x0001"}, "clientappio_api_address"),
    (SUPERLINK, {"extra_args": ["\u2014isolation", "subprocess"]}, "extra_args"),
    (SUPERLINK, {"insecure": False, "certificates_path": "tls\x00/../../etc"}, "certificates_path"),
    # run-config text Flower would not read back unchanged (TOML refuses control characters but a tab)
    (RUN, {"extra_args": ["--run-config", 'strategy="fed\x01avg"']}, "extra_args"),
    (RUN, {"extra_args": ["--run-config", 'strategy="fed\tavg"']}, "extra_args"),
    (RUN, {"extra_args": ["--run-config", "min-nodes=007"]}, "extra_args"),
    (RUN, {"extra_args": ["--run-config", "learning-rate=1e999"]}, "extra_args"),
]


def _raw(stack: Stack, path: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        stack.base_url + path,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {stack.token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_hostile_payloads_are_refused_naming_the_field_and_nothing_starts(stack: Stack) -> None:
    for path, body, field in CORPUS:
        status, answer = stack.request("POST", path, body)  # type: ignore[arg-type]
        assert status == 400, (path, body, status, answer)
        assert answer["field"] == field, (path, body, answer)
    status, answer = _raw(stack, SUPERLINK, b"null")
    assert status == 400 and answer["field"] == "body", answer
    status, answer = _raw(stack, SUPERLINK, b'{"insecure": tru')
    assert status == 400 and answer["field"] == "body", answer
    huge = {"extra_args": ["--isolation", "subprocess"], "pad": "x" * (1024 * 1024)}
    status, answer = stack.request("POST", SUPERLINK, huge)
    assert status == 400 and answer["field"] == "body", answer
    status, answer = _raw(stack, SUPERLINK, json.dumps({"listen_address": "x" * 100_000}).encode())
    assert status == 400 and answer["field"] == "body", answer
    assert (
        not NodeSession.objects.exists() and not FederatedRun.objects.exists() and not NodeEnrollment.objects.exists()
    )
    assert [cmd for _, cmd in stack.leftovers() if "flower" in cmd or "flwr" in cmd] == []


def test_json_nested_too_deep_is_refused_naming_the_body_by_every_operation_that_takes_json(stack: Stack) -> None:
    """Python's JSON parser raises RecursionError (a 500) near 1,000 levels; every POST of the schema
    whose body is JSON answers a 400 naming `body` first, the three start requests among them."""
    with urllib.request.urlopen(f"{stack.base_url}/api/schema/?format=json", timeout=30) as response:  # noqa: S310
        schema = json.loads(response.read())
    project = Project.objects.get(slug=settings.PROJECT_SLUG)
    node = Node.objects.get(project=project, external_id=settings.PARTICIPANT_NODE_ID)
    ids = {"project_id": str(project.pk), "node_id": str(node.pk)}
    paths = [
        path.format(**ids)
        for path, operations in schema["paths"].items()
        if "application/json" in operations.get("post", {}).get("requestBody", {}).get("content", {})
    ]
    assert {SUPERLINK, SUPERNODE, RUN} <= set(paths) and len(paths) >= 10, paths

    for path in paths:
        for body in (b"[" * 2000 + b"]" * 2000, b'{"x": ' + b"[" * 33 + b"]" * 33 + b"}"):
            status, answer = _raw(stack, path, body)
            assert status == 400, (path, status, answer)
            assert answer == {"detail": "body: the body is nested deeper than 32 levels", "field": "body"}, path
    assert not NodeSession.objects.exists() and not FederatedRun.objects.exists()
    assert not NodeEnrollment.objects.exists() and Project.objects.count() == 1
    assert [cmd for _, cmd in stack.leftovers() if "flower" in cmd or "flwr" in cmd] == []
