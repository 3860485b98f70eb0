"""Benchmark: lines from a child run by the real supervisor, persisted and delivered to 1, 10
and 100 websocket clients through Daphne with Redis (PostgreSQL as the database).

    .venv/bin/python bench/log_stream.py [--fast-lines 100000] [--steady-seconds 10] [--clients 1,10,100]

Prints, per case: lines/s persisted, lines/s delivered per client, p50/p99 latency from the
child's write to the client's receipt, lines lost, the supervisor's CPU, and the raw pipe (the
same child into `cat > /dev/null`) measured in the same run, with our throughput as a fraction.
Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import websockets

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
ACK_EVERY = 2_000

# The synthetic child: each line carries its write time (ns) so clients can measure latency.
CHILD = """#!{python}
import json, sys, time
cfg = json.load(open({cfg!r}))
time.sleep(cfg["delay"])
out = sys.stdout
n, rate = cfg["lines"], cfg["rate"]
start = time.perf_counter()
for i in range(1, n + 1):
    if rate:
        due = start + i / rate
        while time.perf_counter() < due:
            time.sleep(max(0.0, min(0.001, due - time.perf_counter())))
    out.write(f"L {{i}} {{time.time_ns()}}\\n")
    if rate:
        out.flush()
out.flush()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = f"fedml_bench_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.cfg = tmp / "child.json"
        (self.bin / "flower-supernode").write_text(CHILD.format(python=sys.executable, cfg=str(self.cfg)))
        os.chmod(self.bin / "flower-supernode", 0o755)
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db}",
            "REDIS_URL": REDIS_URL,
            "FEDML_DATA_DIR": str(tmp / "var"),
            "FEDML_LOG_DIR": str(tmp / "logs"),
            "FEDML_FLOWER_BIN_DIR": str(self.bin),
            "FEDML_SUPERNODE_PORT_RANGE": f"{(first := free_port())}-{first + 63}",
            "FEDML_LOG_LEVEL": "WARNING",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Stack:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        log = open(self.tmp / "stack.out", "ab")  # noqa: SIM115 - children keep it
        self.web = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "fedml_site.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.supervisor = subprocess.Popen(
            [sys.executable, "manage.py", "runsupervisor"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs = [self.supervisor, self.web]
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                    if json.loads(resp.read()).get("supervisor_alive"):
                        break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError("stack did not come up; see " + str(self.tmp / "stack.out"))
        self.cookie = self._login()
        return self

    def _login(self) -> str:
        code = (
            "import django; django.setup();"
            "from django.contrib.auth import get_user_model; from django.test import Client;"
            "u = get_user_model().objects.create_user('bench', password='x-bench-123456', is_staff=True);"
            "c = Client(); c.force_login(u); print(c.cookies['sessionid'].value)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**self.env, "DJANGO_SETTINGS_MODULE": "fedml_site.settings"},
            capture_output=True,
            text=True,
            check=True,
        )
        return f"sessionid={out.stdout.strip()}"

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def start_child(self, *, lines: int, rate: float, delay: float) -> str:
        self.cfg.write_text(json.dumps({"lines": lines, "rate": rate, "delay": delay}))
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/participant/supernode/start",
            data=json.dumps({"partition_id": 0, "num_partitions": 1}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["session_id"]

    def persisted(self, session_id: str) -> int:
        with psycopg.connect(self.env["DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT count(*) FROM log_lines WHERE session_id = %s AND stream = 'stdout'", [session_id]
            ).fetchone()
        return int(row[0])


async def client(url: str, cookie: str, origin: str, expect: int, ready: asyncio.Event, counter: list[int]) -> dict:
    """A faithful but cheap follower: full JSON decode, exactly-once checked per message by its
    sequence numbers, latency sampled on every 20th line (the client shares the 2 cores)."""
    printed = 0  # stdout lines (the child's), in order
    seqs_ok = True
    next_seq = 1
    latencies: list[float] = []
    last_at = 0.0
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, max_size=None) as ws:
        json.loads(await ws.recv())  # hello
        counter[0] += 1
        if counter[0] >= counter[1]:
            ready.set()
        received = acked = 0
        while printed < expect:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
            if message["type"] == "eof":
                raise RuntimeError(f"eof after {printed} of {expect} lines: {message}")
            if message["type"] != "lines":
                continue
            now_ns = time.time_ns()
            lines = message["lines"]
            # Contiguous and gap-free: first is the next expected seq, last is the message's last_seq.
            if (
                lines[0]["seq"] != next_seq
                or lines[-1]["seq"] != message["last_seq"]
                or message["last_seq"] - next_seq + 1 != len(lines)
            ):
                seqs_ok = False
            next_seq = message["last_seq"] + 1
            for index in range(0, len(lines), 20):
                line = lines[index]
                if line["stream"] == "stdout":
                    latencies.append((now_ns - int(line["text"].rsplit(" ", 1)[1])) / 1e6)
            printed += sum(1 for line in lines if line["stream"] == "stdout")
            last_at = time.time()
            received += len(lines)
            # Ack every ACK_EVERY items (well inside the server's window), not every message:
            # each websocket message costs the server far more than its bytes.
            if received - acked >= ACK_EVERY:
                acked = received
                # The server closes right after its eof; a last ack may meet a closed socket.
                with contextlib.suppress(websockets.ConnectionClosedOK):
                    await ws.send(json.dumps({"type": "ack", "received": received}))
    return {"printed": printed, "in_order": seqs_ok, "latencies": latencies, "last_at": last_at}


def raw_pipe(stack: Stack, lines: int, rate: float) -> float:
    """The same child into `cat > /dev/null`: the ceiling for this machine."""
    stack.cfg.write_text(json.dumps({"lines": lines, "rate": rate, "delay": 0}))
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        child = subprocess.Popen([str(stack.bin / "flower-supernode")], stdout=subprocess.PIPE)
        cat = subprocess.Popen(["cat"], stdin=child.stdout, stdout=devnull)
        assert child.stdout is not None
        child.stdout.close()
        child.wait()
        cat.wait()
    return lines / (time.perf_counter() - start)


def run_case(stack: Stack, *, name: str, lines: int, rate: float, clients: int) -> dict:
    delay = 2.0 + clients * 0.05
    session_id = stack.start_child(lines=lines, rate=rate, delay=delay)
    spawned = time.time()
    url = f"ws://127.0.0.1:{stack.port}/ws/sessions/{session_id}/logs/?after=0"
    origin = f"http://127.0.0.1:{stack.port}"
    cpu_before = cpu_seconds(stack.supervisor.pid)
    web_before = cpu_seconds(stack.web.pid)
    self_before = time.process_time()

    async def main() -> tuple[list[dict], float]:
        ready = asyncio.Event()
        counter = [0, clients]
        tasks = [asyncio.create_task(client(url, stack.cookie, origin, lines, ready, counter)) for _ in range(clients)]
        persisted_at = 0.0
        while persisted_at == 0.0:
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(stack.persisted, session_id) >= lines:
                persisted_at = time.time()
        return await asyncio.gather(*tasks), persisted_at

    results, persisted_at = asyncio.run(main())
    first_write = spawned + delay  # the child starts printing after its delay
    cpu = cpu_seconds(stack.supervisor.pid) - cpu_before
    web_cpu = cpu_seconds(stack.web.pid) - web_before
    client_cpu = time.process_time() - self_before
    latencies = sorted(x for r in results for x in r["latencies"])
    lost = sum(lines - r["printed"] for r in results)
    in_order = all(r["in_order"] for r in results)
    delivered = [lines / max(r["last_at"] - first_write, 1e-9) for r in results]
    wall = persisted_at - first_write
    return {
        "case": name,
        "clients": clients,
        "lines": lines,
        "persisted_lps": lines / max(wall, 1e-9),
        "delivered_lps_per_client_min": min(delivered),
        "delivered_lps_per_client_median": statistics.median(delivered),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "lost": lost,
        "in_order_exactly_once": in_order,
        "supervisor_cpu_s": cpu,
        "supervisor_cpu_pct_of_wall": 100 * cpu / max(wall, 1e-9),
        "daphne_cpu_s": web_cpu,
        "bench_clients_cpu_s": client_cpu,
        "delivery_wall_s": max(r["last_at"] for r in results) - first_write,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast-lines", type=int, default=100_000)
    parser.add_argument("--steady-seconds", type=int, default=10)
    parser.add_argument("--clients", default="1,10,100")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    rows = []
    tmp = tempfile.mkdtemp(prefix="fedml-bench-")
    print(f"work dir (daphne and supervisor output in stack.out): {tmp}", flush=True)
    with Stack(Path(tmp)) as stack:
        raw_fast = raw_pipe(stack, args.fast_lines, 0)
        for clients in counts:
            rows.append(run_case(stack, name="fast", lines=args.fast_lines, rate=0, clients=clients))
            print(json.dumps(rows[-1]), flush=True)
        for clients in counts:
            rows.append(
                run_case(stack, name="steady 1000/s", lines=args.steady_seconds * 1000, rate=1000, clients=clients)
            )
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"raw pipe (same child into cat > /dev/null): {raw_fast:,.0f} lines/s")
    header = f"{'case':<14}{'clients':>8}{'persisted/s':>13}{'of raw':>8}{'deliv/s/client':>16}{'p50 ms':>9}{'p99 ms':>9}{'lost':>6}{'sup CPU':>9}"
    print(header)
    for r in rows:
        print(
            f"{r['case']:<14}{r['clients']:>8}{r['persisted_lps']:>13,.0f}{r['persisted_lps'] / raw_fast:>8.1%}"
            f"{r['delivered_lps_per_client_min']:>16,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['lost']:>6}"
            f"{r['supervisor_cpu_pct_of_wall']:>8.0f}%"
        )


if __name__ == "__main__":
    main()
