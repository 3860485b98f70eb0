"""Telemetry without user code: the ServerApp prints FEDML_METRICS after each round and
FEDML_ARTIFACT at the end; once such a line is saved, it becomes round metrics and the run's
`metrics` (docs/architecture.md, "Telemetry")."""

from __future__ import annotations

import logging
import threading

from orchestration import flower, selectors, services
from orchestration.logpipe import Line, Owner
from orchestration.supervisor.common import Inbox, uuid_or_none

logger = logging.getLogger(__name__)


class Telemetry:
    def __init__(self, *, wake: threading.Event) -> None:
        self.lines: Inbox[str] = Inbox(wake)  # filled by the log writer's thread

    def on_lines_saved(self, owner: Owner, lines: list[Line]) -> None:
        """The log writer's hook (its thread), for any process's lines: only hands them over."""
        for line in lines:
            if "FEDML_" in line.text:
                self.lines.put(line.text)

    def step(self) -> bool:
        texts = self.lines.drain()
        for text in texts:
            try:
                self.record(text)
            except Exception:  # a bad line must not stop the supervisor
                logger.exception("could not record telemetry line %r", text[:200])
        return bool(texts)

    def busy(self) -> bool:
        return not self.lines.empty()

    def record(self, text: str) -> None:
        metrics = flower.parse_metrics(text)
        if metrics is not None:
            run_id = uuid_or_none(metrics.get("fedml_run_id"))
            if run_id and selectors.run_get(run_id=run_id) is not None:
                services.round_metric_record(
                    run_id=run_id,
                    round=metrics["round"],
                    phase=metrics["phase"],
                    aggregated=metrics.get("aggregated", {}),
                    per_node=metrics.get("per_node", {}),
                    num_rounds=metrics.get("num_rounds"),
                )
            return
        artifact = flower.parse_artifact(text)
        if artifact is not None:
            run_id = uuid_or_none(artifact.get("fedml_run_id"))
            if run_id and selectors.run_get(run_id=run_id) is not None:
                services.run_record_artifact(run_id=run_id, path=artifact["path"])
