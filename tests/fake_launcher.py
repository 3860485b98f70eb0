"""A launcher for supervisor tests: where the supervisor would start a Flower program, it starts
tests/bin/fake_child.py, a real process in its own process group (started the real way)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings

from orchestration.models import FederatedRun, NodeEnrollment, NodeSession
from orchestration.supervisor import Command, FlowerLauncher, RunControl
from tests.stack import FAKE_CHILD

Args = Sequence[str] | Callable[[Any], Sequence[str]]


def fake_argv(*args: str) -> list[str]:
    return [sys.executable, str(FAKE_CHILD), *args]


def flower_says(data: dict[str, Any]) -> list[str]:
    """fake_child arguments that print one JSON answer the way a `flwr ... --format json` does, then exit 0."""
    return ["0", "0", "--say", json.dumps(data)]


def ls_answer(status: str, details: str = "", *, flower_run_id: str = "42") -> list[str]:
    """What `flwr ls --run-id ID --format json` prints for a run in `status` (e.g. "finished:completed")."""
    run = {"run-id": int(flower_run_id), "status": status, "status-details": details}
    return flower_says({"success": True, "runs": [run]})


class FakeChildLauncher(FlowerLauncher):
    """Sessions run `runtime_config["fake_args"]`; runs, `flwr stop`, `flwr ls` and enrollments
    run the arguments given here (a sequence, or a function of the row). Every command is
    recorded in `started` as (what, row id), in order."""

    def __init__(
        self,
        *,
        run: Args = ("1", "0", "--hang"),
        stop: Args = ("0", "0"),
        ls: Args = ("0", "0"),
        enrollment: Args = ("0", "0"),
        log: Args = ("0", "0"),
    ) -> None:
        self.args = {"run": run, "stop": stop, "ls": ls, "enrollment": enrollment, "log": log}
        self.started: list[tuple[str, str]] = []

    def session_command(self, session: NodeSession) -> Command:
        return self._command("session", session, session.runtime_config["fake_args"])

    def run_command(self, run: FederatedRun) -> Command:
        return self._command("run", run, self._args("run", run))

    def run_control_command(self, run: FederatedRun, action: RunControl) -> Command:
        return self._command(action.value, run, self._args(action.value, run))

    def enrollment_command(self, enrollment: NodeEnrollment, superlink: NodeSession) -> Command:
        return self._command("enrollment", enrollment, self._args("enrollment", enrollment))

    def of(self, what: str) -> list[str]:
        """Ids of the rows a `what` command was started for."""
        return [row_id for kind, row_id in self.started if kind == what]

    def _args(self, what: str, row: Any) -> Sequence[str]:
        args = self.args[what]
        return args(row) if callable(args) else args

    def _command(self, what: str, row: Any, args: Sequence[str]) -> Command:
        self.started.append((what, str(row.pk)))
        return Command(fake_argv(*args), settings.FLWR_HOME_ROOT / f"fake-{what}-{row.pk}")
