from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import services, waits


class Command(BaseCommand):
    help = "Stop the active run through Flower (`flwr stop`), then its CLI process."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--wait", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        run = call(services.run_request_stop, project=accounts_services.project_ensure_default())
        run = waits.run_wait_ended(run_id=run.id, timeout=options["wait"])
        self.stdout.write(f"run {run.id} {run.status}")
