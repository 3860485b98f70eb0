"""Fault: PostgreSQL restarts mid-run. The supervisor keeps its Flower processes and their pipes,
journals every line while the database is away, back-fills it once it answers (no loss, no
duplicate, gap-free), records the outage in its heartbeat, and the run completes.

A PostgreSQL server of the test's own (initdb in a temporary directory, its own port) is
stopped and started again, so the suite's database is never touched; both legs of CI run it.
Real Daphne, supervisor, SuperLink, SuperNodes and `flwr run`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.stack import ROOT, Stack, free_port, start_stack, wait_until

pytestmark = [pytest.mark.federation, pytest.mark.fault]

ROUNDS = 6
PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]) if glob.glob("/usr/lib/postgresql/*/bin") else None


class Server:
    """A throw-away PostgreSQL server run as the `postgres` user (initdb refuses root)."""

    def __init__(self) -> None:
        assert PG_BIN is not None, "PostgreSQL's server binaries (Debian's postgresql package) are needed"
        self.dir = Path(tempfile.mkdtemp(prefix="fedml-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)  # noqa: S603, S607

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.start()
    try:
        yield s
    finally:
        s.close()


def query(url: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, params or []).fetchall()


def answer(url: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]] | None:
    """The rows, or None while the database does not answer."""
    try:
        return query(url, sql, params)
    except psycopg.OperationalError:
        return None


@pytest.fixture
def stack(server: Server, tmp_path: Path) -> Iterator[Stack]:
    env = {**os.environ, "DATABASE_URL": server.url}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    token = (
        subprocess.run(  # noqa: S603
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from django.contrib.auth import get_user_model; from accounts.services import api_token_create;"
                "u = get_user_model().objects.create_user('operator', password='pw-123456-xyz', is_staff=True);"
                "print(api_token_create(user=u, name='fault', actor='tests', via='tests')[1])",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    s = start_stack(tmp_path, {"DATABASE_URL": server.url})
    s.token = token
    try:
        yield s
    finally:
        s.close()


class RunFollower(threading.Thread):
    """A websocket client of the run's log, as the dashboard follows it: acknowledges, and on any
    close but the end reconnects with `after=<last_seq>`. Keeps the run's own lines by seq."""

    def __init__(self, stack: Stack, run_id: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.run_id = stack, run_id
        self.lines: dict[int, str] = {}
        self.closes: list[int | None] = []
        self.errors: list[str] = []
        self.ended = False
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.ended:
                self._connect_once()
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def _connect_once(self) -> None:
        after = max(self.lines, default=0)
        url = self.stack.base_url.replace("http://", "ws://") + f"/ws/runs/{self.run_id}/logs/?after={after}"
        protocols = [Subprotocol("fedml"), Subprotocol(f"bearer.{self.stack.token}")]
        try:
            with connect(url, subprotocols=protocols, additional_headers={"Origin": self.stack.base_url}) as ws:
                received = 0
                for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "lines":
                        received += len(message["lines"])
                        ws.send(json.dumps({"type": "ack", "received": received}))
                        if message["follow"] == f"run:{self.run_id}":
                            for line in message["lines"]:
                                assert line["seq"] not in self.lines, f"line {line['seq']} twice"
                                self.lines[line["seq"]] = line["text"]
                    elif message["type"] == "error":
                        self.errors.append(message.get("detail", ""))
                    elif message["type"] == "eof" and message["follow"] == f"run:{self.run_id}":
                        self.ended = True
                        return
        except ConnectionClosed as exc:
            self.closes.append(exc.rcvd.code if exc.rcvd else None)
        except OSError:
            self.closes.append(None)  # Daphne refused while its database was away
        time.sleep(0.5)  # a client's reconnect pacing


def _stop_everything(stack: Stack) -> None:
    for path in ("/api/coordinator/runs/stop", "/api/participant/supernode/stop", "/api/coordinator/superlink/stop"):
        status, body = stack.post(path)
        assert status in (200, 409), (path, status, body)
    wait_until(lambda: not stack.children(), timeout=120, message="no Flower process left")


def test_a_database_restart_mid_run_costs_no_process_no_line_and_no_truthful_row(stack: Stack, server: Server) -> None:
    run_id = stack.start_federation(rounds=ROUNDS)
    wait_until(
        lambda: answer(server.url, "SELECT 1 FROM round_metrics WHERE run_id = %s AND round = 1", [run_id]),
        timeout=180,
        message="round 1",
    )
    supervisor = stack.procs["supervisor"]
    follower = RunFollower(stack, run_id)
    follower.start()
    wait_until(lambda: follower.lines, timeout=60, message="the websocket follower's first lines")
    journal_dir = stack.tmp / "var" / "journal"

    server.stop()
    down_at = time.monotonic()
    # Down until the supervisor has met the outage and journalled lines of Flower's processes.
    wait_until(
        lambda: (
            "database unreachable" in (stack.tmp / "supervisor.out").read_text(errors="replace")
            and any(journal_dir.glob("*.jsonl"))
        ),
        timeout=60,
        message="the supervisor journalling lines while the database is down",
    )
    status, body = stack.get("/api/coordinator/runs/active")
    assert status == 503 and isinstance(body, dict) and body.get("detail"), (status, body)  # JSON, not HTML
    server.start()
    outage = time.monotonic() - down_at

    wait_until(
        lambda: answer(server.url, "SELECT 1 FROM federated_runs WHERE id = %s AND ended_at IS NOT NULL", [run_id]),
        timeout=300,
        message="the run's end",
    )
    assert supervisor.poll() is None, "the supervisor must ride out the outage"
    ((status_, detail, log_path),) = query(
        server.url, "SELECT status, status_detail, log_path FROM federated_runs WHERE id = %s", [run_id]
    )
    assert status_ == "completed", detail
    rounds = query(
        server.url, "SELECT round FROM round_metrics WHERE run_id = %s AND phase = 'evaluate' ORDER BY round", [run_id]
    )
    assert [r for (r,) in rounds] == list(range(1, ROUNDS + 1))
    ((outages,),) = query(server.url, "SELECT database_outages FROM supervisor_heartbeats WHERE stopped_at IS NULL")
    assert outages >= 1

    follower.join(timeout=120)
    assert follower.failure is None, follower.failure
    assert follower.ended, (follower.closes, follower.errors)
    run_rows = query(server.url, "SELECT seq, text FROM log_lines WHERE run_id = %s ORDER BY seq", [run_id])
    # The websocket client ended with every line, once (paths on this host are shown redacted).
    assert sorted(follower.lines) == [seq for seq, _ in run_rows]
    redacted = (str(stack.tmp), str(ROOT))
    assert all(follower.lines[q] == t or any(r in t for r in redacted) for q, t in run_rows)

    _stop_everything(stack)
    wait_until(lambda: not any(journal_dir.glob("*.jsonl")), timeout=60, message="every journal back-filled")
    owners = [("run_id", run_id, log_path)] + [
        ("session_id", str(sid), path) for sid, path in query(server.url, "SELECT id, log_path FROM node_sessions")
    ]
    counted = 0
    for column, owner, path in owners:
        rows = query(server.url, f"SELECT seq, text FROM log_lines WHERE {column} = %s ORDER BY seq", [owner])  # noqa: S608
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), f"{column} {owner}: a gap or a duplicate"
        assert [text for _, text in rows] == Path(path).read_text(encoding="utf-8").splitlines(), path
        counted += len(rows)
    print(
        json.dumps(
            {
                "outage_seconds": round(outage, 1),
                "lines_in_files_and_database": counted,
                "database_outages": outages,
                "websocket_closes": follower.closes,
            }
        )
    )
