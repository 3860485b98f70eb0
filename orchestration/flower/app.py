"""The Flower app's pyproject: its run config and the `current-run-id` FedML writes before each run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import tomlkit

CURRENT_RUN_ID_KEY = "current-run-id"


RESERVED_RUN_CONFIG_KEYS = frozenset({CURRENT_RUN_ID_KEY, "artifact-dir"})


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_app_config(app_dir: Path) -> dict[str, Any]:
    doc = tomlkit.parse((app_dir / "pyproject.toml").read_text(encoding="utf-8"))
    return doc.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}).unwrap()


def set_current_run_id(app_dir: Path, value: str, *, only_if: str | None = None) -> bool:
    """Write `current-run-id` under [tool.flwr.app.config], keeping comments and layout.

    With `only_if`, change it only while it still holds that value (a newer run wins).
    """
    path = app_dir / "pyproject.toml"
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    config = doc["tool"]["flwr"]["app"]["config"]  # type: ignore[index]
    if only_if is not None and str(config.get(CURRENT_RUN_ID_KEY, "")) != only_if:
        return False
    config[CURRENT_RUN_ID_KEY] = value  # type: ignore[index]
    atomic_write(path, tomlkit.dumps(doc))
    return True
