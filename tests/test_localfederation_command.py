"""README's main job: `manage.py localfederation` brings up the web server, the supervisor, a
SuperLink, SuperNodes and a run on the embedded default (SQLite, in-memory layer), follows the
run to its end, prints where to watch it, and leaves nothing running."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import ROOT, free_port, processes_mentioning, supernode_port_range

pytestmark = pytest.mark.federation


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    shutil.copytree(
        ROOT / "flower_app", tmp_path / "flower_app", ignore=shutil.ignore_patterns("artifacts", "__pycache__")
    )
    superlink_port = free_port()
    # The embedded default, whichever leg this is.
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fedml.sqlite3'}",
            "FEDML_DATA_DIR": str(tmp_path / "var"),
            "FEDML_LOG_DIR": str(tmp_path / "logs"),
            "FEDML_FLOWER_APP_DIR": str(tmp_path / "flower_app"),
            "FEDML_SUPERLINK_ADDRESS": f"127.0.0.1:{superlink_port}",
            "FEDML_SUPERNODE_PORT_RANGE": supernode_port_range(avoid=[superlink_port]),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def _localfederation(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv list
        [sys.executable, "manage.py", "localfederation", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_localfederation_runs_a_federation_on_the_embedded_default_and_stops_everything(tmp_path: Path) -> None:
    web_port = free_port()

    done = _localfederation(_env(tmp_path), "--nodes", "2", "--rounds", "2", "--port", str(web_port))

    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert f"FedML is up: http://127.0.0.1:{web_port}/api/coordinator/health" in out
    assert re.search(rf"  http://127\.0\.0\.1:{web_port}/admin/orchestration/federatedrun/[0-9a-f-]{{36}}/change/", out)
    assert "[fedml] round 2/2 evaluate" in out
    accuracy = re.search(r"completed; final held-out accuracy ([0-9.]+)", out)
    assert accuracy is not None, out[-3000:]
    assert float(accuracy.group(1)) >= 0.9  # measured 0.947 after one round with 3 nodes
    assert out.rstrip().endswith("local federation stopped")
    assert processes_mentioning(str(tmp_path)) == []


def test_localfederation_says_which_supernode_died_instead_of_waiting_for_it(tmp_path: Path) -> None:
    """A SuperNode that dies at start-up would leave the run waiting until its round timeout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = Path(sys.executable).parent
    for name in ("flower-superlink", "flower-superexec", "flwr", "flwr-serverapp"):
        (bin_dir / name).symlink_to(real / name)
    # A fake child in flower-supernode's place: one line on stderr, then exit 1.
    supernode = bin_dir / "flower-supernode"
    supernode.write_text(
        f"#!{sys.executable}\nimport sys\nprint('cannot reach the data volume', file=sys.stderr)\nsys.exit(1)\n"
    )
    supernode.chmod(0o755)

    done = _localfederation(
        _env(tmp_path, FEDML_FLOWER_BIN_DIR=str(bin_dir)), "--nodes", "1", "--rounds", "1", "--port", str(free_port())
    )

    assert done.returncode == 1, done.stdout[-3000:]
    assert re.search(r"SuperNode session [0-9a-f-]{36} failed: .*exited with code 1", done.stderr), done.stderr
    assert "cannot reach the data volume" in done.stderr
    assert "local federation stopped" in done.stdout
    assert processes_mentioning(str(tmp_path)) == []
