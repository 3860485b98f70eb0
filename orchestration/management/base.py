"""Shared bits of FedML's management commands: thin shells over the services."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import OutputWrapper

from accounts.permissions import EVERY_PROJECT
from orchestration import selectors
from orchestration.models import RUN_LIVE_STATUSES, FederatedRun
from orchestration.runtime_config import RESTART_NEVER, RESTART_POLICIES


def add_extra_args(parser: Any) -> None:
    parser.add_argument(
        "--extra-arg",
        dest="extra_args",
        action="append",
        default=[],
        help="A Flower flag to pass through (repeat; e.g. --extra-arg=--max-retries --extra-arg=3). Allowlisted.",
    )


def add_restart_policy(parser: Any) -> None:
    parser.add_argument(
        "--restart-policy",
        default=RESTART_NEVER,
        help=f"What the supervisor does when the process exits by itself: {', '.join(RESTART_POLICIES)} "
        "(restarts back off from 1 s to 60 s).",
    )


def follow_run(run_id: Any, out: OutputWrapper, *, poll: float = 0.5, show_lines: bool = True) -> FederatedRun:
    """Print the run's log from the database and round i/N progress until it ends."""
    after = 0
    seen_rounds: set[tuple[int, str]] = set()
    while True:
        run = selectors.run_get(run_id=run_id, projects=EVERY_PROJECT)  # a command is trusted
        assert run is not None
        lines = selectors.log_lines_after(run=run, after=after, limit=2000)
        for line in lines:
            if show_lines:
                out.write(line.text)
            after = line.seq
        total = (run.metrics or {}).get("num_rounds") or run.config.get("num_rounds") or "?"
        for metric in selectors.round_metrics(run=run):
            key = (metric.round, metric.phase)
            if key not in seen_rounds:
                seen_rounds.add(key)
                shown = ", ".join(f"{k}={v:.4f}" for k, v in metric.aggregated.items() if isinstance(v, (int, float)))
                out.write(f"[fedml] round {metric.round}/{total} {metric.phase}: {shown}")
        if run.status not in RUN_LIVE_STATUSES and not lines:
            return run
        if not lines:
            time.sleep(poll)
