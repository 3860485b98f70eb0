"""FedML telemetry lines emitted by the ServerApp.

Contract with FedML's supervisor (one line each, compact JSON after the tag)::

    FEDML_METRICS {"v":1,"fedml_run_id":"...","flwr_run_id":"123",
                   "ts":1764293000.123,"round":1,"num_rounds":5,"phase":"train"|"evaluate",
                   "aggregated":{"train_loss":0.3},
                   "per_node":{"<node id>":{"train_loss":0.31,...},...}}
    FEDML_ARTIFACT {"v":1,"fedml_run_id":"...","flwr_run_id":"123","ts":...,
                    "path":"/abs/model.pt"}

``flwr_run_id`` (Flower's run id as a decimal string, as in
``flwr ls --format json``) and ``ts`` (emit time, Unix seconds) are extras on
top of the minimal contract.

Metric values are JSON floats; non-finite values (NaN/inf) become ``null`` and
list-valued metrics are dropped, so every line is strict JSON.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

METRICS_TAG = "FEDML_METRICS"
ARTIFACT_TAG = "FEDML_ARTIFACT"
SCHEMA_VERSION = 1


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Convert a MetricRecord / mapping into ``{str: float|None}`` (lists dropped)."""
    if not metrics:
        return {}
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if isinstance(value, (list, tuple, bool)):
            continue
        out[str(key)] = _num(value)
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


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, sort_keys=False)


def format_metrics_line(
    *,
    fedml_run_id: str,
    flwr_run_id: int | None,
    server_round: int,
    num_rounds: int,
    phase: str,
    aggregated: Mapping[str, Any] | None,
    per_node: Mapping[str, Mapping[str, Any]],
) -> str:
    if phase not in ("train", "evaluate"):
        raise ValueError(f"phase must be 'train' or 'evaluate', got {phase!r}")
    payload = {
        "v": SCHEMA_VERSION,
        "fedml_run_id": fedml_run_id,
        "flwr_run_id": None if flwr_run_id is None else str(flwr_run_id),
        "ts": round(time.time(), 3),
        "round": int(server_round),
        "num_rounds": int(num_rounds),
        "phase": phase,
        "aggregated": clean_metrics(aggregated),
        "per_node": {str(k): clean_metrics(v) for k, v in per_node.items()},
    }
    return f"{METRICS_TAG} {_dumps(payload)}"


def format_artifact_line(*, fedml_run_id: str, flwr_run_id: int | None, path: str) -> str:
    payload = {
        "v": SCHEMA_VERSION,
        "fedml_run_id": fedml_run_id,
        "flwr_run_id": None if flwr_run_id is None else str(flwr_run_id),
        "ts": round(time.time(), 3),
        "path": path,
    }
    return f"{ARTIFACT_TAG} {_dumps(payload)}"


def parse_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """Parse a (possibly prefixed, e.g. by a log formatter) telemetry line.

    Returns ``(tag, payload)`` or ``None``. Handy for FedML-side parsing/tests.
    """
    for tag in (METRICS_TAG, ARTIFACT_TAG):
        pos = line.find(tag + " {")
        if pos >= 0:
            try:
                return tag, json.loads(line[pos + len(tag) + 1 :].strip())
            except json.JSONDecodeError:
                return None
    return None


def emit(line: str) -> None:
    """Write one telemetry line to the ServerApp's stdout (flushed)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
