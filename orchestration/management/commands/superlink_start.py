from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import services, waits
from orchestration.management.base import add_extra_args, add_restart_policy
from orchestration.states import SessionStatus


class Command(BaseCommand):
    help = "Ask the supervisor to start the SuperLink (waits until it has a pid)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--secure", action="store_true", help="Use TLS (needs --certificates-path).")
        parser.add_argument("--certificates-path", default=None)
        parser.add_argument("--listen-address", default=None, help="host:port for Fleet, Control and Runtime APIs")
        add_extra_args(parser)
        add_restart_policy(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        node = accounts_services.coordinator_node_ensure()
        session = call(
            services.superlink_request_start,
            node=node,
            insecure=not options["secure"],
            certificates_path=options["certificates_path"],
            listen_address=options["listen_address"],
            extra_args=options["extra_args"],
            restart_policy=options["restart_policy"],
        )
        session = call(waits.session_wait_spawned, session_id=session.id)
        if session.status != SessionStatus.RUNNING:
            raise CommandError(f"SuperLink {session.status}: {session.status_detail}")
        self.stdout.write(f"SuperLink started: session {session.id}, pid {session.pid}, log {session.log_path}")
