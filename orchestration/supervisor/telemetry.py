"""Telemetry without user code: each run's ServerApp appends metrics records to its own channel
file (see orchestration/flower/telemetry.py); this worker follows the files of the runs it
spawned and turns their records into round metrics and the run's `metrics`.

Log lines are never read for telemetry: what a ClientApp prints, or a remote site's error text
Flower logs, stays a plain log line. A record counts only from the run's own file, names that
run (and Flower's run id, once known), passes the contract, and arrives while the run is live.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from accounts.permissions import EVERY_PROJECT
from orchestration import selectors, services
from orchestration.flower.telemetry import (
    ArtifactRecord,
    ChannelReader,
    NodesRecord,
    Record,
    channel_file,
    parse_record,
)
from orchestration.models import FederatedRun
from orchestration.states import RUN_LIVE_STATUSES, WAITING_FOR_NODES
from orchestration.supervisor.common import log_unless_outage, telemetry_dir

logger = logging.getLogger(__name__)


class Telemetry:
    def __init__(self) -> None:
        self._readers: dict[str, ChannelReader] = {}  # run id -> its channel; loop thread only
        self._dropped: dict[str, int] = {}
        self._held: dict[str, list[bytes]] = {}  # read before FedML knew Flower's run id
        self._causes: dict[str, str] = {}  # run id -> why its ServerApp gave up (it fails next)

    def watch(self, run: FederatedRun) -> None:
        """Follow the run's channel from now on (called as its `flwr run` is spawned)."""
        if run.coordinator_session_id is None:
            return
        path = channel_file(telemetry_dir(run.coordinator_session_id), str(run.pk))
        # Whatever is there before the run started is not this run's telemetry.
        path.unlink(missing_ok=True)
        self._readers[str(run.pk)] = ChannelReader(path)

    def finish(self, run_id: str) -> str | None:
        """Read what is left and stop following; called before the run's terminal status is written.
        Returns why the ServerApp gave up, when it said so (the cause of a failure)."""
        reader = self._readers.get(run_id)
        if reader is not None:
            self._read(run_id, final=True)
            # Its figures are in the database now; the file would only grow the data directory.
            reader.path.unlink(missing_ok=True)
        cause = self._causes.get(run_id)
        self._forget(run_id)
        return cause

    def _forget(self, run_id: str) -> None:
        self._readers.pop(run_id, None)
        self._held.pop(run_id, None)
        self._causes.pop(run_id, None)
        dropped = self._dropped.pop(run_id, 0)
        if dropped:
            logger.warning("run %s: %d telemetry records outside the contract were dropped", run_id, dropped)

    def step(self) -> bool:
        did = False
        for run_id in list(self._readers):
            did |= self._read(run_id)
        return did

    def busy(self) -> bool:
        return False  # the files stay on disk; nothing is lost by stopping between reads

    def watching(self) -> list[str]:
        return list(self._readers)

    def _read(self, run_id: str, *, final: bool = False) -> bool:
        try:
            new = self._readers[run_id].read()
        except OSError:
            logger.exception("could not read the telemetry of run %s", run_id)
            return False
        if not new and not self._held.get(run_id):
            return False
        lines = self._held.pop(run_id, []) + new
        # Read from the file once: until each record is in the database it is held here, so an
        # outage (which propagates, the pass is retried) loses none.
        self._held[run_id] = lines
        run = selectors.run_get(run_id=run_id, projects=EVERY_PROJECT)
        if run is None or run.status not in RUN_LIVE_STATUSES:
            self._forget(run_id)  # ended meanwhile: its figures are final
            return True
        if not run.flower_run_id and not final:
            # A record is checked against Flower's run id, which `flwr run` prints first but
            # the log writer may hand over a moment after the ServerApp's first record.
            return True
        held = self._held[run_id]
        while held:
            try:  # one bad record must not stop the supervisor, nor keep a run from ending
                record = parse_record(held[0])
                if record is None or not _belongs_to(record, run):
                    self._dropped[run_id] = self._dropped.get(run_id, 0) + 1
                else:
                    cause = _record(record, run)
                    if cause:
                        self._causes[run_id] = cause
            except Exception as exc:
                log_unless_outage(exc, "could not record a telemetry record of run %s", run_id)
            held.pop(0)
        self._held.pop(run_id, None)
        return True


def _belongs_to(record: Record, run: FederatedRun) -> bool:
    """Names this run, and the Flower run Flower said it started for it."""
    return record.fedml_run_id == str(run.pk) and bool(run.flower_run_id) and record.flwr_run_id == run.flower_run_id


def _record(record: Record, run: FederatedRun) -> str | None:
    """Record it; returns the cause of the run's coming failure when the record gives one."""
    if isinstance(record, ArtifactRecord):
        path = _artifact_within(record.path)
        if path is not None:
            services.run_record_artifact(run_id=run.pk, path=str(path))
        return None
    if isinstance(record, NodesRecord):
        detail = _waiting_detail(record, run)
        services.run_note_waiting(run_id=run.pk, detail=detail)
        return detail if record.timed_out else None
    services.round_metric_record(
        run_id=run.pk,
        round=record.round,
        phase=record.phase,
        aggregated=record.aggregated,
        per_node=record.per_node,
        num_rounds=record.num_rounds,
    )
    return None


def _waiting_detail(record: NodesRecord, run: FederatedRun) -> str:
    """What the run waits for, naming the project's nodes that are not connected ("" once it no longer waits)."""
    if not record.waiting and not record.timed_out:
        return ""
    missing = selectors.nodes_not_connected(run=run, connected=record.connected)
    said = (
        f"{WAITING_FOR_NODES}: {len(record.connected)} connected, {record.required} required"
        if not record.timed_out
        else f"Gave up waiting for nodes: {len(record.connected)} connected, {record.required} required"
    )
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        said += f"; not connected: {shown}"
    return said


def _artifact_within(raw: str) -> Path | None:
    """The model file, only if it is under FedML's artifacts directory (the ServerApp's own output)."""
    try:
        path = Path(raw).resolve()
    except (ValueError, OSError, RuntimeError):
        return None
    return path if path.is_relative_to(Path(settings.ARTIFACTS_DIR).resolve()) and path.is_file() else None
