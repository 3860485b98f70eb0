"""Reading what Flower prints: its run id, `flwr ... --format json` answers, and the ServerApp's telemetry lines."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


RUN_STARTED_RE = re.compile(r"Successfully started run (\d+)")


METRICS_PREFIX = "FEDML_METRICS "


ARTIFACT_PREFIX = "FEDML_ARTIFACT "


def strip_ansi(text: str) -> str:
    """Remove terminal escapes and carriage returns; NUL (which PostgreSQL text refuses) becomes U+FFFD."""
    return ANSI_RE.sub("", text).replace("\r", "").replace("\x00", "\ufffd")


def parse_run_started(line: str) -> str | None:
    match = RUN_STARTED_RE.search(line)
    if match:
        return match.group(1)
    stripped = line.strip()
    if stripped.startswith("{") and '"run-id"' in stripped:
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        if data.get("success") and data.get("run-id") is not None:
            return str(data["run-id"])
    return None


def _parse_prefixed(line: str, prefix: str) -> dict[str, Any] | None:
    index = line.find(prefix)
    if index < 0:
        return None
    try:
        data = json.loads(line[index + len(prefix) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("v") == 1 else None


def parse_metrics(line: str) -> dict[str, Any] | None:
    """A ServerApp telemetry line: see flower_app/fedml_app/telemetry.py for the contract."""
    data = _parse_prefixed(line, METRICS_PREFIX)
    if not data:
        return None
    if data.get("phase") not in {"train", "evaluate"} or not isinstance(data.get("round"), int):
        return None
    if not isinstance(data.get("aggregated", {}), dict) or not isinstance(data.get("per_node", {}), dict):
        return None
    return data


def parse_artifact(line: str) -> dict[str, Any] | None:
    data = _parse_prefixed(line, ARTIFACT_PREFIX)
    return data if data and isinstance(data.get("path"), str) else None


@dataclass(frozen=True)
class FlowerRunStatus:
    status: str  # pending | starting | running | finished
    sub_status: str  # completed | failed | stopped | ""
    details: str

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def parse_cli_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object a `flwr ... --format json` command printed (it exits 0 even on errors:
    check `success`). stderr is captured with stdout, so skip log lines (which may hold braces)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^[ \t]*\{", stdout, re.MULTILINE):
        try:
            candidate, _ = decoder.raw_decode(stdout, match.end() - 1)
        except ValueError:
            continue
        if isinstance(candidate, dict) and "success" in candidate:
            return candidate
    return None


def parse_ls_json(stdout: str, *, flower_run_id: str) -> FlowerRunStatus | None:
    """Parse `flwr ls --run-id ID --format json`; None when Flower said nothing usable."""
    data = parse_cli_json(stdout)
    if data is None or not data.get("success", False):
        return None
    for run in data.get("runs", []):
        if str(run.get("run-id")) != flower_run_id:
            continue
        status, _, sub_status = str(run.get("status", "")).partition(":")
        return FlowerRunStatus(status=status, sub_status=sub_status, details=str(run.get("status-details", "") or ""))
    return None
