"""Reading what Flower prints: its run id and `flwr ... --format json` answers. (Telemetry never
comes from output: see orchestration/flower/telemetry.py.)"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass
from typing import Any

ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


# The whole line, as `flwr run` prints it (flwr/cli/run/run.py): a line that merely contains
# the sentence (an echoed argument, a streamed app log) is not Flower saying it.
# Older releases logged it: "INFO :   🎊 Successfully started run N".
RUN_STARTED_RE = re.compile(
    r"\s*(?:INFO\s*:\s*)?(?:\U0001f38a\s*)?Successfully started run (\d+)(?: in federation \S+)?\s*"
)


def strip_ansi(text: str) -> str:
    """Remove terminal escapes and carriage returns; NUL (which PostgreSQL text refuses) becomes U+FFFD."""
    return ANSI_RE.sub("", text).replace("\r", "").replace("\x00", "\ufffd")


def parse_run_started(line: str) -> str | None:
    """Flower's run id from a line `flwr run` itself printed on stdout (never a FedML system line)."""
    match = RUN_STARTED_RE.fullmatch(strip_ansi(line))
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


class StreamedLines:
    """The lines of a run's log Flower streamed on stdout, and a replay's repeats of them dropped.

    `flwr run --stream` prints its own lines, then "Successfully started run N", then the run's
    log (`print`, stdout; Flower's own log lines go to stderr). `flwr log --stream` prints only
    the log, from its start (after a line of its own). A replay's line is dropped while it is
    the next line of what was saved already (compared by content, so an error printed instead
    of the replay is kept); once the replay differs from what was saved, everything is kept.
    Used by the pipe reader's thread only; read by the loop once that child's pipes are closed.
    Only decides which lines are logged: never a status, a metric or a run id.
    """

    def __init__(self, *, saved: array[int] | None = None) -> None:
        self.replay = saved is not None
        self.started = self.replay
        # Hashes of the run's log lines saved so far, in order: 8 bytes a line.
        self.saved: array[int] = array("q", saved if saved is not None else ())
        # How many of them the replay repeated so far; once it differs, len(saved): nothing more matches.
        self._matched = 0
        self.skipped = 0  # lines of a replay dropped as repeats

    def keep(self, stream: str, text: str) -> bool:
        if stream != "stdout":
            return True
        if not self.started:
            self.started = parse_run_started(text) is not None
            return True
        digest = hash(text)
        if self._matched < len(self.saved) and self.saved[self._matched] == digest:
            self._matched += 1
            self.skipped += 1
            return False
        if self.replay and self._matched == 0 and self.saved:
            # Not the log yet (`flwr log` prints "Using SuperLink: ..." first, or an error
            # instead): kept, and the replay may still begin.
            return True
        self.saved.append(digest)  # the run's log goes on (or the replay differs: nothing more is dropped)
        self._matched = len(self.saved)
        return True


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
