from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import waits
from orchestration.management.base import add_extra_args, add_restart_policy
from orchestration.states import SessionStatus
from participants import services


class Command(BaseCommand):
    help = "Ask the supervisor to start a SuperNode for this site's participant node."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--superlink-address", default=None)
        parser.add_argument("--partition-id", type=int, default=0)
        parser.add_argument("--num-partitions", type=int, default=1)
        parser.add_argument("--clientappio-api-address", default=None, help="host:port of this SuperNode's runtime API")
        parser.add_argument("--secure", action="store_true")
        parser.add_argument("--certificates-path", default=None)
        add_extra_args(parser)
        add_restart_policy(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        node = accounts_services.participant_node_ensure()
        session = call(
            services.supernode_request_start,
            node=node,
            superlink_address=options["superlink_address"],
            partition_id=options["partition_id"],
            num_partitions=options["num_partitions"],
            clientappio_api_address=options["clientappio_api_address"],
            insecure=not options["secure"],
            certificates_path=options["certificates_path"],
            extra_args=options["extra_args"],
            restart_policy=options["restart_policy"],
        )
        session = call(waits.session_wait_spawned, session_id=session.id)
        if session.status != SessionStatus.RUNNING:
            raise CommandError(f"SuperNode {session.status}: {session.status_detail}")
        self.stdout.write(f"SuperNode started: session {session.id}, pid {session.pid}, log {session.log_path}")
