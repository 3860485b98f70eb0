"""Soak benchmark: consecutive real federated runs on one stack (Daphne, the supervisor, a SuperLink
and two SuperNodes, PostgreSQL and Redis), printing after each run what the supervisor and Daphne
hold: open file descriptors, threads, resident memory and PostgreSQL connections. Flat is good.

    .venv/bin/python bench/soak.py [--runs 20] [--rounds 1]

Each run is started and followed through the HTTP API with a staff API token; the figures are read
from /proc (descriptors, threads, VmRSS) and from the kernel's TCP table (each process's sockets to
port 5432), so nothing in FedML reports on itself. The last line compares the last run's figures
with the first one's as ratios. Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis on
127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/3"  # apart from the test suite's database 0
PG_PORT_HEX = f"{5432:04X}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_figures(pid: int) -> dict[str, float]:
    """Open descriptors, threads, resident MiB and PostgreSQL connections of one process."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    fds = 0
    for entry in fd_dir.iterdir():
        fds += 1
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    pg = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = fields[2].rsplit(":", 1)[1]
            established = fields[3] == "01"
            if remote_port == PG_PORT_HEX and established and fields[9] in inodes:
                pg += 1
    return {
        "fds": fds,
        "threads": int(status["Threads"].strip()),
        "rss_mib": int(status["VmRSS"].strip().split()[0]) / 1024,
        "pg": pg,
    }


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = f"fedml_soak_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.superlink_port = free_port()
        shutil.copytree(
            ROOT / "flower_app", tmp / "flower_app", ignore=shutil.ignore_patterns("artifacts", "__pycache__")
        )
        first = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db}",
            "REDIS_URL": REDIS_URL,
            "FEDML_DATA_DIR": str(tmp / "var"),
            "FEDML_LOG_DIR": str(tmp / "logs"),
            "FEDML_FLOWER_APP_DIR": str(tmp / "flower_app"),
            "FEDML_SUPERLINK_ADDRESS": f"127.0.0.1:{self.superlink_port}",
            "FEDML_SUPERNODE_PORT_RANGE": f"{first}-{first + 63}",
            "FEDML_RATE_CONTROL": "off",
            "FEDML_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = ""

    def __enter__(self) -> Stack:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.manage("migrate", "-v0")
        log = open(self.tmp / "stack.out", "ab")  # noqa: SIM115 - the children keep it
        for name, argv in (
            (
                "daphne",
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "fedml_site.asgi:application",
                ],
            ),
            ("supervisor", [sys.executable, "manage.py", "runsupervisor"]),
        ):
            self.procs[name] = subprocess.Popen(  # noqa: S603
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.token = (
            self.manage(
                "shell",
                "-c",
                "from django.contrib.auth import get_user_model; from accounts.services import api_token_create;"
                "u = get_user_model().objects.create_user('soak', password='x-soak-123456', is_staff=True);"
                "print(api_token_create(user=u, name='soak', actor='soak', via='bench')[1])",
            )
            .strip()
            .splitlines()[-1]
        )
        self.wait(lambda: self.call("GET", "/health")[1].get("supervisor_alive"), 60, "the supervisor's heartbeat")
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("supervisor", "daphne"):  # the supervisor stops its Flower processes first
            proc = self.procs[name]
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def manage(self, *args: str) -> str:
        out = subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - our own loopback server
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except OSError:
            return 0, {}

    @staticmethod
    def wait(predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    def figures(self) -> dict[str, dict[str, float]]:
        return {name: process_figures(proc.pid) for name, proc in self.procs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedml-soak-") as tmp, Stack(Path(tmp)) as stack:
        status, body = stack.call(
            "POST", "/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{stack.superlink_port}"}
        )
        assert status == 201, body
        for partition in range(2):
            status, body = stack.call(
                "POST", "/api/participant/supernode/start", {"partition_id": partition, "num_partitions": 2}
            )
            assert status == 201, body
        before = stack.figures()
        header = f"{'run':>4} {'status':>10} {'secs':>6}"
        for name in ("supervisor", "daphne"):
            header += f" | {name[:10]:>10} fds thr  rss MiB pg"
        print(header)
        rows = []
        for number in range(1, args.runs + 1):
            started = time.monotonic()
            config = ["--run-config", f"num-server-rounds={args.rounds}"]
            status, body = stack.call("POST", "/api/coordinator/runs/start", {"extra_args": config})
            assert status in (201, 202), body
            run_id = body["run_id"]

            def ended(run_id: str = run_id) -> dict[str, Any] | None:
                code, run = stack.call("GET", f"/api/coordinator/runs/{run_id}")
                return run if code == 200 and run.get("ended_at") else None

            run = stack.wait(ended, 600, f"run {number}")
            figures = stack.figures()
            rows.append(figures)
            line = f"{number:>4} {run['status']:>10} {time.monotonic() - started:>6.1f}"
            for name in ("supervisor", "daphne"):
                f = figures[name]
                line += f" | {'':>10} {f['fds']:>3.0f} {f['threads']:>3.0f} {f['rss_mib']:>8.1f} {f['pg']:>2.0f}"
            print(line, flush=True)
        first, last = rows[0], rows[-1]
        for name in ("supervisor", "daphne"):
            ratios = ", ".join(
                f"{key} {first[name][key]:.0f}->{last[name][key]:.0f} (x{last[name][key] / max(first[name][key], 1):.2f})"
                for key in ("fds", "threads", "rss_mib", "pg")
            )
            print(f"{name}: before the first run {before[name]}; first run -> run {args.runs}: {ratios}")


if __name__ == "__main__":
    main()
