"""The real thing, for the federation tier: Daphne serving FedML and the supervisor (which spawns
Flower), against the test database; plus the helpers tests use to wait on it and to pick ports."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
FAKE_CHILD = Path(__file__).resolve().parent / "bin" / "fake_child.py"


def free_port() -> int:
    """A port free now and below Linux's ephemeral range (32768-60999), so no outgoing
    connection can take it before the process under test binds it."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are all free now, below the ephemeral range."""
    while True:
        first = random.randrange(20000, 32768 - count)
        if all(_bindable(port) for port in range(first, first + count)):
            return first


SUPERNODE_PORTS = 64  # a test FedML's FEDML_SUPERNODE_PORT_RANGE: room for every SuperNode a test starts


def supernode_port_range(*, avoid: Iterable[int] = ()) -> str:
    """FEDML_SUPERNODE_PORT_RANGE for a FedML of a test's own: consecutive free ports, none of `avoid`
    (its SuperLinks' ports, which settings refuse inside a SuperNode range)."""
    taken = set(avoid)
    while True:
        first = free_ports(SUPERNODE_PORTS)
        if taken.isdisjoint(range(first, first + SUPERNODE_PORTS)):
            return f"{first}-{first + SUPERNODE_PORTS - 1}"


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(interval)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@contextlib.contextmanager
def postgres_database(server: str | None = None) -> Iterator[str]:
    """A new, empty PostgreSQL database of the test's own on `server` (default $FEDML_TEST_POSTGRES or
    postgres://postgres@127.0.0.1:5432): yields its URL, and drops it afterwards, whoever is still connected."""
    import psycopg

    server = (server or os.environ.get("FEDML_TEST_POSTGRES") or "postgres://postgres@127.0.0.1:5432").rstrip("/")
    name = f"fedml_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose command line or environment mentions `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append((int(entry.name), cmdline))
    return found


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    web_port: int
    superlink_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""  # a staff user's API token, sent with every request

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def app_dir(self) -> Path:
        return self.tmp / "flower_app"

    @property
    def log_dir(self) -> Path:
        return self.tmp / "logs"

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 60
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own loopback server
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return self.request("POST", path, body or {})

    def manage(
        self, *args: str, timeout: float = 600, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start_supervisor(self) -> subprocess.Popen[bytes]:
        with open(self.tmp / "supervisor.out", "ab") as log:
            proc = subprocess.Popen(  # noqa: S603
                [sys.executable, str(ROOT / "manage.py"), "runsupervisor"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs["supervisor"] = proc
        wait_until(lambda: self.get("/health")[1].get("supervisor_alive"), timeout=30, message="supervisor heartbeat")
        return proc

    def start_web(self) -> None:
        with open(self.tmp / "web.out", "ab") as log:
            self.procs["web"] = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    # Twisted listens with a backlog of 50: a burst of more connections is reset.
                    "-e",
                    f"tcp:port={self.web_port}:interface=127.0.0.1:backlog=1024",
                    "fedml_site.asgi:application",
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            try:
                return self.get("/health")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=30, message="daphne up")

    def stop(self, name: str, *, timeout: float = 90) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=10)

    def start_federation(self, *, nodes: int = 2, rounds: int = 3) -> str:
        """SuperLink, `nodes` SuperNodes and a run, all through the HTTP API; returns the run id."""
        status, body = self.post(
            "/api/coordinator/superlink/start", {"listen_address": f"127.0.0.1:{self.superlink_port}"}
        )
        assert status == 201, body
        for partition in range(nodes):
            status, body = self.post(
                "/api/participant/supernode/start", {"partition_id": partition, "num_partitions": nodes}
            )
            assert status == 201, body
        status, body = self.post(
            "/api/coordinator/runs/start", {"extra_args": ["--run-config", f"num-server-rounds={rounds}"]}
        )
        # 202: claimed while the just-started SuperLink does not accept connections yet (a loaded machine).
        assert status in (201, 202), body
        return body["run_id"]

    def leftovers(self) -> list[tuple[int, str]]:
        return processes_mentioning(str(self.tmp))

    def children(self) -> list[tuple[int, str]]:
        """Processes of this stack other than Daphne and the supervisor: Flower's."""
        own = {proc.pid for proc in self.procs.values()}
        return [(pid, cmd) for pid, cmd in self.leftovers() if pid not in own]

    def alive(self) -> bool:
        return all(name in self.procs and self.procs[name].poll() is None for name in ("web", "supervisor"))

    def quiesce(self) -> None:
        """Stop whatever a test left running, through the API, and wait until nothing runs."""
        from orchestration.models import FederatedRun, NodeSession

        def stop(path: str, project: str = "", node_id: str = "") -> None:
            body = {k: v for k, v in (("project_id", project), ("node_id", node_id)) if v}
            status, answer = self.post(path, body)
            assert status in (200, 409), (path, status, answer)  # 409: nothing of that kind is live

        # Every project's: first the runs, while their SuperLinks can still pass `flwr stop` on.
        projects = {
            str(p) for p in FederatedRun.objects.filter(ended_at__isnull=True).values_list("project_id", flat=True)
        }
        for project in sorted(projects) or [""]:
            stop("/api/coordinator/runs/stop", project)
        wait_until(
            lambda: not FederatedRun.objects.filter(ended_at__isnull=True).exists(), timeout=120, message="run ended"
        )
        live = NodeSession.objects.filter(ended_at__isnull=True).select_related("node")
        for node in sorted({str(s.node_id) for s in live if s.kind == "supernode"}) or [""]:
            stop("/api/participant/supernode/stop", node_id=node)
        for project in sorted({str(s.node.project_id) for s in live if s.kind == "superlink"}) or [""]:
            stop("/api/coordinator/superlink/stop", project)
        wait_until(
            lambda: not NodeSession.objects.filter(ended_at__isnull=True).exists(),
            timeout=120,
            message="every session of the shared stack ended",
        )
        wait_until(lambda: not self.children(), timeout=60, message="no Flower process left on the shared stack")

    def close(self) -> None:
        self.stop("supervisor")
        self.stop("web")
        for pid, _ in self.leftovers():  # never leave a Flower process behind, even after a failure
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        connection.close()


def staff_token() -> str:
    from django.contrib.auth import get_user_model

    from accounts.services import api_token_create

    user = get_user_model().objects.create_user(username="operator", password="pw-123456-xyz", is_staff=True)
    return api_token_create(user=user, name="tests", actor="tests", via="tests")[1]


def start_stack(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Stack:
    """Daphne + the supervisor on the test database, with their own data, log and app dirs."""
    shutil.copytree(
        ROOT / "flower_app", tmp_path / "flower_app", ignore=shutil.ignore_patterns("artifacts", "__pycache__")
    )
    superlink_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "FEDML_DATA_DIR": str(tmp_path / "var"),
        "FEDML_LOG_DIR": str(tmp_path / "logs"),
        "FEDML_FLOWER_APP_DIR": str(tmp_path / "flower_app"),
        "FEDML_SUPERLINK_ADDRESS": f"127.0.0.1:{superlink_port}",
        "FEDML_STOP_TIMEOUT_SECONDS": "10",
        # One staff token drives a whole test (a fuzz makes hundreds of control requests a minute);
        # tests/test_control_burst.py turns the limit on for its own stack.
        "FEDML_RATE_CONTROL": "off",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    if "FEDML_SUPERNODE_PORT_RANGE" not in (extra_env or {}):
        first, last = (int(p) for p in env.get("FEDML_SUPERLINK_PORT_RANGE", "9200-9299").split("-"))
        env["FEDML_SUPERNODE_PORT_RANGE"] = supernode_port_range(avoid=[superlink_port, *range(first, last + 1)])
    s = Stack(tmp=tmp_path, env=env, web_port=free_port(), superlink_port=superlink_port)
    try:
        s.start_web()
        s.start_supervisor()
    except BaseException:
        s.close()
        raise
    return s


@contextlib.contextmanager
def running_stack(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A stack of the test's own (see `own_stack`)."""
    token = staff_token()
    s = start_stack(tmp_path, extra_env)
    s.token = token
    try:
        yield s
    finally:
        s.close()


class SharedStack:
    """One Daphne + supervisor for every federation test that leaves it as it found it.

    Those tests are transactional, so pytest-django empties every table after each, rows the
    running processes rely on included. The supervisor names the nodes it serves by their
    configured external ids (orchestration/supervisor/scope.py), so rows made again under new
    ids are still its own. Before each test the configured project and nodes are made again, as
    the supervisor makes them at its start; a new staff token is made; and the test waits for
    the supervisor's heartbeat, which it re-inserts within a second (update, else insert). After
    each test whatever it left running is stopped through the API; a stack that cannot be
    brought back to rest, or whose Daphne or supervisor died, is closed and the next test starts
    a new one.
    """

    def __init__(self, root: Path, blocker: Any) -> None:
        self.root = root
        self.blocker = blocker
        self.stack: Stack | None = None
        self.started = 0

    def get(self) -> Stack:
        if self.stack is not None and not self.stack.alive():
            self.close()
        if self.stack is None:
            self.started += 1
            with self.blocker.unblock():
                self.stack = start_stack(self.root / f"stack-{self.started}")
        return self.stack

    def close(self) -> None:
        if self.stack is not None:
            stack, self.stack = self.stack, None
            with self.blocker.unblock():
                stack.close()
