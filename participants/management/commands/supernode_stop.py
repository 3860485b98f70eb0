from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import waits
from participants import services


class Command(BaseCommand):
    help = "Stop one SuperNode (--session-id) or all of this site's SuperNodes."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--session-id", default=None)
        parser.add_argument("--wait", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        node = accounts_services.participant_node_ensure()
        sessions = call(services.supernode_request_stop, node=node, session_id=options["session_id"])
        for session in sessions:
            session = waits.session_wait_ended(session_id=session.id, timeout=options["wait"])
            self.stdout.write(f"SuperNode {session.status}: session {session.id}")
