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

from tests.conftest import ROOT, free_port, processes_mentioning

pytestmark = pytest.mark.federation


def test_localfederation_runs_a_federation_on_the_embedded_default_and_stops_everything(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "flower_app", tmp_path / "flower_app", ignore=shutil.ignore_patterns("artifacts", "__pycache__")
    )
    web_port = free_port()
    env = {
        key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL")
    }  # the embedded default, whichever leg this is
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fedml.sqlite3'}",
            "FEDML_DATA_DIR": str(tmp_path / "var"),
            "FEDML_LOG_DIR": str(tmp_path / "logs"),
            "FEDML_FLOWER_APP_DIR": str(tmp_path / "flower_app"),
            "FEDML_SUPERLINK_ADDRESS": f"127.0.0.1:{free_port()}",
            "FEDML_SUPERNODE_BASE_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )

    done = subprocess.run(  # noqa: S603 - argv list
        [sys.executable, "manage.py", "localfederation", "--nodes", "2", "--rounds", "2", "--port", str(web_port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

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
