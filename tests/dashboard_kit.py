"""Run the real Next.js dashboard (shared/seed-dashboard/frontend) against a FedML server, for browser tests.

A copy of the frontend gets only a `.env.local` and a `next.config.ts` whose `beforeFiles` rewrites hand every
same-origin call the dashboard makes (`/api/**`, `/auth/v1/**`) to FedML; none of its other code changes. The
browser therefore only ever talks to the dashboard's origin, so FedML needs no CORS. See docs/dashboard.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from itertools import count, takewhile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
APP_NAME = "FedML"
APP_ICON = "/logo/fed-ml-logo.png"  # ships in the frontend's public/
# Next's proxy cuts request bodies at 10 MB when a middleware exists (the dashboard has one): raise it for uploads.
MAX_PROXIED_BODY = "512mb"


class DashboardKitError(RuntimeError):
    """The dashboard could not be found, installed or started."""


def seed_dashboard() -> Path:
    """The seed dashboard: $FEDML_SEED_DASHBOARD, else <repo>/../shared/seed-dashboard, else /work/shared/seed-dashboard."""
    configured = os.environ.get("FEDML_SEED_DASHBOARD")
    defaults = [REPO.parent / "shared" / "seed-dashboard", Path("/work/shared/seed-dashboard")]
    candidates = [Path(configured)] if configured else defaults
    for path in candidates:
        if (path / "frontend" / "package.json").is_file():
            return path.resolve()
    tried = ", ".join(str(p) for p in candidates)
    raise DashboardKitError(
        f"seed dashboard not found (no frontend/package.json under: {tried}); set FEDML_SEED_DASHBOARD"
    )


def __getattr__(name: str) -> Any:  # `SEED_DASHBOARD` resolves on first use, so importing this module never fails
    if name == "SEED_DASHBOARD":
        return seed_dashboard()
    raise AttributeError(name)


def npm_cache_dir() -> Path:
    return Path(os.environ.get("FEDML_NPM_CACHE") or REPO / "var" / "npm-cache")


def dashboard_url(port: int) -> str:
    """The dashboard's origin. `localhost`, not 127.0.0.1: Next's middleware redirects always name `localhost`."""
    return f"http://localhost:{port}"


def _plain(value: str, what: str) -> str:
    if not value or any(c in value for c in "\r\n\"'`$\\ "):
        raise ValueError(f"{what} must be non-empty, without quotes, spaces, backslashes or newlines: {value!r}")
    return value


def env_local_text(*, dashboard_port: int, anon_key: str) -> str:
    """`.env.local`: Supabase Auth and both server URLs point at the dashboard's own origin (rewritten to FedML)."""
    origin = dashboard_url(dashboard_port)
    return (
        f"NEXT_PUBLIC_SUPABASE_URL={origin}\n"
        f"NEXT_PUBLIC_SUPABASE_ANON_KEY={_plain(anon_key, 'anon_key')}\n"
        f"NEXT_PUBLIC_ADMIN_SERVER_URL={origin}/api/coordinator\n"
        f"NEXT_PUBLIC_CLIENT_SERVER_URL={origin}/api/participant\n"
        f"NEXT_PUBLIC_APP_NAME={APP_NAME}\n"
        f"NEXT_PUBLIC_APP_ICON={APP_ICON}\n"
    )


def next_config_text(*, fedml_url: str) -> str:
    """`next.config.ts`: `beforeFiles` rewrites, so FedML answers even where the dashboard has its own route handler."""
    parts = urlsplit(_plain(fedml_url, "fedml_url").rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ValueError(f"fedml_url must be a bare origin like http://127.0.0.1:8000: {fedml_url!r}")
    return f"""import type {{ NextConfig }} from "next";

// Written by tests/dashboard_kit.py: FedML serves everything the dashboard fetches from its own origin.
const FEDML = {json.dumps(f"{parts.scheme}://{parts.netloc}")};

const nextConfig: NextConfig = {{
  experimental: {{ middlewareClientMaxBodySize: {json.dumps(MAX_PROXIED_BODY)} }},
  async rewrites() {{
    return {{
      beforeFiles: [
        {{ source: "/api/:path*", destination: `${{FEDML}}/api/:path*` }},
        {{ source: "/auth/v1/:path*", destination: `${{FEDML}}/auth/v1/:path*` }},
      ],
      afterFiles: [],
      fallback: [],
    }};
  }},
}};

export default nextConfig;
"""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise DashboardKitError(f"`{name}` not found on PATH: the dashboard needs Node.js 20+ and npm")
    return found


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def prepare_dashboard(workdir: Path, *, fedml_url: str, dashboard_port: int, anon_key: str) -> Path:
    """Copy the frontend to `workdir/frontend`, configure it for FedML, `npm ci` it; returns the copy."""
    dest = workdir / "frontend"
    shutil.copytree(
        seed_dashboard() / "frontend", dest, ignore=shutil.ignore_patterns("node_modules", ".next"), dirs_exist_ok=True
    )
    (dest / ".env.local").write_text(env_local_text(dashboard_port=dashboard_port, anon_key=anon_key))
    (dest / "next.config.ts").write_text(next_config_text(fedml_url=fedml_url))
    cache = npm_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    argv = [_tool("npm"), "ci", "--no-audit", "--no-fund", "--prefer-offline", "--cache", str(cache)]
    log_path = workdir / "npm-ci.log"
    with open(log_path, "wb") as log:
        done = subprocess.run(argv, cwd=dest, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=900)  # noqa: S603
    if done.returncode != 0:
        raise DashboardKitError(f"npm ci failed ({done.returncode}) in {dest}:\n{_tail(log_path)}")
    return dest


def start_dashboard(directory: Path, port: int, *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """`next dev` on 127.0.0.1:`port`, in its own process group (see `stop_dashboard`), logging to `log_path`
    (default: `next-dev.log` beside `directory`)."""
    _tool("node")
    # TELEMETRY_DEBUG makes `next dev` run its exit-time telemetry flush in the foreground (it only logs, as telemetry
    # is disabled) instead of as a detached process that would outlive `stop_dashboard`.
    telemetry = {"NEXT_TELEMETRY_DISABLED": "1", "NEXT_TELEMETRY_DEBUG": "1"}
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"} | telemetry
    argv = [str(directory / "node_modules" / ".bin" / "next"), "dev", "-p", str(port), "-H", "127.0.0.1"]
    with open(log_path or directory.parent / "next-dev.log", "ab") as log:
        return subprocess.Popen(  # noqa: S603
            argv, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_dashboard_ready(
    url: str, timeout: float = 240, *, proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None
) -> None:
    """Poll `url` (e.g. `<dashboard>/signin`, which also compiles the middleware) until it answers 200; fail early
    if `proc` exits. The first request compiles on demand, so it can take tens of seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DashboardKitError(f"next dev exited ({proc.returncode}):\n{_tail(log_path) if log_path else ''}")
        try:
            with urllib.request.urlopen(url, timeout=max(1.0, min(90.0, deadline - time.monotonic()))) as resp:  # noqa: S310
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise DashboardKitError(f"dashboard at {url} not ready after {timeout}s: {last}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_dashboard(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop `next dev` and the server process it forks: its whole process group, TERM then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.2)
    proc.wait(timeout=timeout)


def session_cookie_name(supabase_url: str) -> str:
    """The cookie @supabase/ssr keeps the session in: `sb-<first label of the URL's hostname>-auth-token`."""
    return f"sb-{(urlsplit(supabase_url).hostname or '').split('.')[0]}-auth-token"


def decode_session_cookie(cookies: dict[str, str], name: str) -> dict[str, Any] | None:
    """The session JSON in cookie `name`, or in its chunks `name.0`, `name.1`...: `base64-` + base64url(JSON)."""
    value = cookies.get(name) or "".join(takewhile(bool, (cookies.get(f"{name}.{i}", "") for i in count())))
    if not value:
        return None
    if value.startswith("base64-"):
        value = value.removeprefix("base64-")
        value = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    return json.loads(value)
