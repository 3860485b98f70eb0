"""A process run by the real supervisor prints 50,000 numbered lines while a websocket client
follows it through a real Daphne server: every line arrives, in order, exactly once.

CI runs this on both legs: the embedded default (SQLite, in-memory layer, supervisor in another
process, so the consumer relies on reading the database) and PostgreSQL with Redis (doorbells).
It starts Daphne and the supervisor, so it is in the federation tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client

from orchestration.models import LogLine, NodeSession
from tests.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]

LINES = 50_000

FAKE_SUPERNODE = """#!{python}
# Stands in for flower-supernode: once the test says its client follows the log (the go
# file exists), prints numbered lines as fast as it can, then exits 0.
import os, sys, time
while not os.path.exists({go!r}):
    time.sleep(0.01)
out = sys.stdout
for i in range(1, {lines} + 1):
    out.write(f"line {{i}}\\n")
out.flush()
"""


@pytest.fixture
def fake_flower_stack(transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    # Its own stack: this one's Flower binaries are a fake.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "flower-supernode"
    script.write_text(FAKE_SUPERNODE.format(python=sys.executable, go=str(tmp_path / "go"), lines=LINES))
    os.chmod(script, 0o755)
    with running_stack(tmp_path, {"FEDML_FLOWER_BIN_DIR": str(bin_dir)}) as s:
        yield s


async def follow(url: str, cookie: str, origin: str, go: Path) -> tuple[list[dict], dict]:
    lines: list[dict] = []
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, max_size=None) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        go.touch()  # the process prints only now: its lines reach a client that is following live
        received = 0
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
            if message["type"] == "lines":
                lines.extend(message["lines"])
                received += len(message["lines"])
                # The server closes right after its eof; a last ack may meet a closed socket.
                with contextlib.suppress(websockets.ConnectionClosedOK):
                    await ws.send(json.dumps({"type": "ack", "received": received}))
            elif message["type"] == "eof":
                return lines, message
            assert message["type"] != "behind", message
    raise AssertionError(hello)


def test_fifty_thousand_lines_reach_a_websocket_client_in_order_exactly_once(fake_flower_stack: Stack) -> None:
    stack = fake_flower_stack
    user = get_user_model().objects.create_user(username="watcher", password="pw-123456-xyz", is_staff=True)
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    status, body = stack.post("/api/participant/supernode/start", {"partition_id": 0, "num_partitions": 1})
    assert status == 201, body
    session_id = body["session_id"]
    url = f"ws://127.0.0.1:{stack.web_port}/ws/sessions/{session_id}/logs/?after=0"
    lines, eof = asyncio.run(follow(url, cookie, f"http://127.0.0.1:{stack.web_port}", stack.tmp / "go"))

    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    printed = [line["text"] for line in lines if line["stream"] == "stdout"]
    assert printed == [f"line {i}" for i in range(1, LINES + 1)]
    assert eof["status"] == "exited" and eof["last_seq"] == len(lines)
    wait_until(lambda: NodeSession.objects.get(pk=session_id).status == "exited", timeout=10)
    assert LogLine.objects.filter(session_id=session_id).count() == len(lines)
