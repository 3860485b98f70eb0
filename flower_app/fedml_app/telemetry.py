"""FedML telemetry: what the ServerApp reports to FedML's supervisor, and how.

The channel is a file only this run's ServerApp is told about: FedML starts the SuperLink with
``FEDML_TELEMETRY_DIR`` in its environment (a 0700 directory per SuperLink), Flower's
SuperExec passes its environment on to the ServerApp process, and the ServerApp appends one
JSON object per line to ``$FEDML_TELEMETRY_DIR/<FedML run id>.jsonl``. SuperNodes and their
ClientApps never get the variable, and nothing here is printed: telemetry never travels in a
log, so no process output (a ClientApp's print, a remote site's error text that Flower logs)
can be taken for metrics, and participants reading the run's log see no per-node figures.

One record per line (compact JSON)::

    {"v":1,"kind":"metrics","fedml_run_id":"...","flwr_run_id":"123","ts":1764293000.123,
     "round":1,"num_rounds":5,"phase":"train"|"evaluate",
     "aggregated":{"train_loss":0.3},"per_node":{"<node id>":{"train_loss":0.31,...},...}}
    {"v":1,"kind":"artifact","fedml_run_id":"...","flwr_run_id":"123","ts":...,"path":"/abs/model.pt"}

Metric values are JSON floats; non-finite values (NaN/inf) become ``null`` and list-valued
metrics are dropped, so every line is strict JSON. Outside FedML (no variable) nothing is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TELEMETRY_DIR_ENV = "FEDML_TELEMETRY_DIR"
SCHEMA_VERSION = 1
MAX_METRICS = 200  # FedML's reader drops what goes beyond these: a site's reply must not inflate a record
MAX_NAME = 100
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Convert a MetricRecord / mapping into ``{str: float|None}`` (lists dropped)."""
    if not metrics:
        return {}
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        name = str(key)
        if isinstance(value, (list, tuple, bool)) or not name or len(name) > MAX_NAME:
            continue
        out[name] = _num(value)
        if len(out) == MAX_METRICS:
            break
    return out


def per_node_metrics(replies: Iterable[Any]) -> dict[str, dict[str, float | None]]:
    """Map ``str(src_node_id)`` -> metrics of each successful reply Message."""
    out: dict[str, dict[str, float | None]] = {}
    for msg in replies:
        if msg.has_error():
            continue
        merged: dict[str, float | None] = {}
        for record in msg.content.metric_records.values():
            merged.update(clean_metrics(record))
        out[str(msg.metadata.src_node_id)] = merged
    return out


def metrics_record(
    *,
    fedml_run_id: str,
    flwr_run_id: int | None,
    server_round: int,
    num_rounds: int,
    phase: str,
    aggregated: Mapping[str, Any] | None,
    per_node: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    if phase not in ("train", "evaluate"):
        raise ValueError(f"phase must be 'train' or 'evaluate', got {phase!r}")
    return {
        "v": SCHEMA_VERSION,
        "kind": "metrics",
        "fedml_run_id": fedml_run_id,
        "flwr_run_id": None if flwr_run_id is None else str(flwr_run_id),
        "ts": round(time.time(), 3),
        "round": int(server_round),
        "num_rounds": int(num_rounds),
        "phase": phase,
        "aggregated": clean_metrics(aggregated),
        "per_node": {str(k): clean_metrics(v) for k, v in per_node.items()},
    }


def artifact_record(*, fedml_run_id: str, flwr_run_id: int | None, path: str) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "kind": "artifact",
        "fedml_run_id": fedml_run_id,
        "flwr_run_id": None if flwr_run_id is None else str(flwr_run_id),
        "ts": round(time.time(), 3),
        "path": path,
    }


def nodes_record(
    *, fedml_run_id: str, flwr_run_id: int | None, connected: list[int], required: int, timed_out: bool = False
) -> dict[str, Any]:
    """Which nodes the run has while it waits for `required` of them (sent when that changes)."""
    return {
        "v": SCHEMA_VERSION,
        "kind": "nodes",
        "fedml_run_id": fedml_run_id,
        "flwr_run_id": None if flwr_run_id is None else str(flwr_run_id),
        "ts": round(time.time(), 3),
        "connected": sorted(str(node) for node in connected),
        "required": int(required),
        "timed_out": bool(timed_out),
    }


class Channel:
    """Appends records to this run's telemetry file; a no-op when FedML did not start the SuperLink."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def for_run(cls, fedml_run_id: str, environ: Mapping[str, str] | None = None) -> Channel:
        directory = (environ if environ is not None else os.environ).get(TELEMETRY_DIR_ENV, "")
        name = _SAFE_NAME.sub("_", fedml_run_id)
        if not directory or not name:
            return cls(None)
        return cls(Path(directory) / f"{name}.jsonl")

    def write(self, record: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        # One write of a whole line with O_APPEND: the reader never sees half a record
        # followed by another's start. 0600: the file is FedML's and this process's only.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
