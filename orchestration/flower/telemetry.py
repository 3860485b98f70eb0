"""The ServerApp's telemetry channel, read side (the write side is flower_app/fedml_app/telemetry.py).

FedML gives each SuperLink a 0700 directory in `FEDML_TELEMETRY_DIR`; the ServerApp of a run
appends JSON records to `<dir>/<FedML run id>.jsonl`. Nothing here reads process output: a
record counts only when it comes from that file and passes `parse_record`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TELEMETRY_DIR_ENV = "FEDML_TELEMETRY_DIR"
MAX_RECORD_BYTES = 1 << 20  # one round of a large federation fits; a longer "line" is dropped
MAX_READ_BYTES = 8 << 20  # per file per read, so one chatty run cannot hold up the loop
MAX_METRICS = 200
MAX_NODES = 10_000
MAX_NAME = 100
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class MetricsRecord:
    fedml_run_id: str
    flwr_run_id: str | None
    round: int
    num_rounds: int | None
    phase: str
    aggregated: dict[str, float | None]
    per_node: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class ArtifactRecord:
    fedml_run_id: str
    flwr_run_id: str | None
    path: str


@dataclass(frozen=True)
class NodesRecord:
    """The run waits for `required` nodes (or waited, once enough are connected again)."""

    fedml_run_id: str
    flwr_run_id: str | None
    connected: tuple[str, ...]  # Flower's node ids
    required: int
    timed_out: bool

    @property
    def waiting(self) -> bool:
        return len(self.connected) < self.required


Record = MetricsRecord | ArtifactRecord | NodesRecord


def channel_file(directory: Path, fedml_run_id: str) -> Path:
    return directory / f"{_SAFE_NAME.sub('_', fedml_run_id)}.jsonl"


def _number(value: Any) -> float | None | bool:
    """A metric value: a finite JSON number, or null; False for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return False
    return number if math.isfinite(number) else False


def _metric_map(value: Any) -> dict[str, float | None] | None:
    """A metric mapping; entries outside the contract are dropped (a site's odd key must not cost
    every other figure of the round). None when it is no mapping at all."""
    if not isinstance(value, dict):
        return None
    out: dict[str, float | None] = {}
    for key, raw in value.items():
        number = _number(raw)
        if number is False or not isinstance(key, str) or not key or len(key) > MAX_NAME:
            continue
        assert not isinstance(number, bool)
        out[key] = number
        if len(out) == MAX_METRICS:
            break
    return out


def _optional_id(value: Any) -> str | None | bool:
    """Flower's run id as a decimal string; False when malformed."""
    if value is None:
        return None
    return value if isinstance(value, str) and value.isdigit() and len(value) <= 20 else False


def parse_record(raw: bytes) -> Record | None:
    """One line of the channel as a record; None unless it is exactly what the contract allows."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("fedml_run_id"), str):
        return None
    flwr_run_id = _optional_id(data.get("flwr_run_id"))
    if flwr_run_id is False:
        return None
    assert not isinstance(flwr_run_id, bool)
    if data.get("kind") == "artifact":
        path = data.get("path")
        if not isinstance(path, str) or not path or len(path) > 4096 or "\x00" in path:
            return None
        return ArtifactRecord(fedml_run_id=data["fedml_run_id"], flwr_run_id=flwr_run_id, path=path)
    if data.get("kind") == "nodes":
        return _nodes_record(data, flwr_run_id)
    if data.get("kind") != "metrics" or data.get("phase") not in ("train", "evaluate"):
        return None
    round_, num_rounds = data.get("round"), data.get("num_rounds")
    if not isinstance(round_, int) or isinstance(round_, bool) or not 1 <= round_ <= 1_000_000:
        return None
    if num_rounds is not None and (not isinstance(num_rounds, int) or not round_ <= num_rounds <= 1_000_000):
        return None
    aggregated = _metric_map(data.get("aggregated", {}))
    per_node_raw = data.get("per_node", {})
    if aggregated is None or not isinstance(per_node_raw, dict) or len(per_node_raw) > MAX_NODES:
        return None
    per_node: dict[str, dict[str, float | None]] = {}
    for node, metrics in per_node_raw.items():
        cleaned = _metric_map(metrics)
        if cleaned is not None and node and len(node) <= MAX_NAME:
            per_node[node] = cleaned  # a malformed node entry is dropped, not the round
    return MetricsRecord(
        fedml_run_id=data["fedml_run_id"],
        flwr_run_id=flwr_run_id,
        round=round_,
        num_rounds=num_rounds,
        phase=data["phase"],
        aggregated=aggregated,
        per_node=per_node,
    )


def _nodes_record(data: dict[str, Any], flwr_run_id: str | None) -> NodesRecord | None:
    connected, required, timed_out = data.get("connected"), data.get("required"), data.get("timed_out", False)
    if not isinstance(connected, list) or len(connected) > MAX_NODES or not isinstance(timed_out, bool):
        return None
    if not all(_optional_id(node) not in (None, False) for node in connected):
        return None
    if not isinstance(required, int) or isinstance(required, bool) or not 0 <= required <= MAX_NODES:
        return None
    return NodesRecord(
        fedml_run_id=data["fedml_run_id"],
        flwr_run_id=flwr_run_id,
        connected=tuple(connected),
        required=required,
        timed_out=timed_out,
    )


class ChannelReader:
    """Follows one run's channel file from a byte offset; yields complete lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""
        self._skipping = False  # inside an over-long line: drop up to its end

    def read(self) -> list[bytes]:
        try:
            # Never a symlink, and never blocked on a FIFO planted in its place.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return []
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{self.path.name} is not a regular file")
            os.lseek(fd, self.offset, os.SEEK_SET)
            chunk = os.read(fd, MAX_READ_BYTES)
        finally:
            os.close(fd)
        self.offset += len(chunk)
        lines: list[bytes] = []
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            if self._skipping:
                self._skipping = False
                continue
            if line and len(line) <= MAX_RECORD_BYTES:
                lines.append(line)
        if len(self._partial) > MAX_RECORD_BYTES:
            self._partial, self._skipping = b"", True
        return lines
