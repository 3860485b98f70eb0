from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts import services as accounts_services
from orchestration import selectors
from orchestration.models import NodeSession
from orchestration.runtime_config import supernode_config


class Command(BaseCommand):
    help = "Show the supervisor, SuperLink, SuperNodes and the active run."

    def handle(self, *args: Any, **options: Any) -> None:
        project = accounts_services.project_ensure_default()
        supervisor = selectors.supervisor_status()
        self.stdout.write(f"project     {project.slug} ({project.id})")
        self.stdout.write(
            "supervisor  "
            + ("alive" if supervisor["supervisor_alive"] else f"NOT RUNNING - {supervisor['supervisor_hint']}")
        )
        superlink = selectors.session_live_superlink(project=project)
        self.stdout.write(f"superlink   {_session(superlink)}")
        node = accounts_services.participant_node_ensure()
        supernodes = list(selectors.session_live_supernodes(node=node))
        self.stdout.write(f"supernodes  {len(supernodes)} live")
        for session in supernodes:
            self.stdout.write(f"  - {_session(session)} partition {supernode_config(session).node_config}")
        run = selectors.run_live(project=project) or selectors.run_latest(project=project)
        if run is None:
            self.stdout.write("run         none")
        else:
            rounds = (run.metrics or {}).get("last_round", 0)
            total = (run.metrics or {}).get("num_rounds") or run.config.get("num_rounds") or "?"
            self.stdout.write(
                f"run         {run.id} {run.status} flower={run.flower_run_id or '-'} round {rounds}/{total}"
            )


def _session(session: NodeSession | None) -> str:
    if session is None:
        return "not running"
    return f"{session.status} pid={session.pid} session={session.id} log={session.log_path}"
