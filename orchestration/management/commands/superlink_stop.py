from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import services, waits


class Command(BaseCommand):
    help = "Stop the SuperLink (active runs are stopped first)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for it to end")

    def handle(self, *args: Any, **options: Any) -> None:
        session = call(services.superlink_request_stop, node=accounts_services.coordinator_node_ensure())
        session = waits.session_wait_ended(session_id=session.id, timeout=options["wait"])
        self.stdout.write(f"SuperLink {session.status}: session {session.id}")
