"""The Flower App as shipped: a valid app config, no federations table, nothing from Django."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.stack import ROOT

APP = ROOT / "flower_app"


def test_shipped_pyproject_has_components_config_and_no_stale_run_id() -> None:
    with open(APP / "pyproject.toml", "rb") as handle:
        doc = tomllib.load(handle)
    app = doc["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": "fedml_app.server_app:app", "clientapp": "fedml_app.client_app:app"}
    assert app["config"]["current-run-id"] == ""  # FedML writes it per run and clears it after
    assert app["config"]["num-server-rounds"] == 5
    # `flwr run` rewrites a pyproject that has federations; connections live in FLWR_HOME.
    assert "federations" not in doc["tool"]["flwr"]


def test_flower_app_imports_nothing_from_django() -> None:
    code = (
        "import sys, warnings; warnings.simplefilter('ignore');"
        "import fedml_app.server_app, fedml_app.client_app, fedml_app.task, fedml_app.telemetry;"
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules), 'django imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=APP, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
