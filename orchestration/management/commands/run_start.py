from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import services, waits
from orchestration.management.base import follow_run
from orchestration.states import RunStatus


class Command(BaseCommand):
    help = "Start a federated run (`flwr run`) on the running SuperLink; --follow streams it to the end."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--federation-name", default="production")
        parser.add_argument("--no-stream", action="store_true", help="don't attach `flwr run --stream`")
        parser.add_argument("--run-config", action="append", default=[], help="key=value overrides (repeatable)")
        parser.add_argument("--label", default="")
        parser.add_argument("--follow", action="store_true", help="print the log and round i/N until the run ends")

    def handle(self, *args: Any, **options: Any) -> None:
        extra: list[str] = []
        for pair in options["run_config"]:
            extra += ["--run-config", pair]
        run = call(
            services.run_request_start,
            project=accounts_services.project_ensure_default(),
            federation_name=options["federation_name"],
            stream=not options["no_stream"],
            extra_args=extra,
            label=options["label"],
        )
        run = call(waits.run_wait_spawned, run_id=run.id)
        if run.pid is None and run.status == RunStatus.STARTING:
            self.stdout.write(f"run {run.id} starting: {run.status_detail or 'waiting for the SuperLink'}")
        else:
            self.stdout.write(f"run {run.id} {run.status}: pid {run.pid}, log {run.log_path}")
        if not options["follow"]:
            return
        run = follow_run(run.id, self.stdout)
        self.stdout.write(
            f"run {run.id} {run.status} (Flower run {run.flower_run_id or '-'}): {run.status_detail.splitlines()[0] if run.status_detail else ''}"
        )
        if run.status != RunStatus.COMPLETED:
            raise CommandError(f"run {run.id} ended {run.status}")
