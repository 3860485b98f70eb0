"""`manage.py localfederation`: the whole federation on one machine (README's first command).

It lives in participants, the top of the app graph, because it drives both sides: the
coordinator's SuperLink and run (orchestration) and the sites' SuperNodes (participants).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services as accounts_services
from accounts.management.base import call
from orchestration import selectors, services, waits
from orchestration.management.base import follow_run
from orchestration.private_files import CHILD_UMASK, open_private_append
from orchestration.states import RunStatus
from participants import services as participant_services


class Command(BaseCommand):
    help = (
        "Bring up a whole local federation for a first-time user: the web server, the supervisor, "
        "the SuperLink, N SuperNodes and a run, and follow the run to its end."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--nodes", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=5)
        parser.add_argument("--port", type=int, default=8000, help="port for the web server (Daphne)")
        parser.add_argument("--keep-running", action="store_true", help="leave everything running after the run")
        parser.add_argument("--quiet-log", action="store_true", help="print round progress only, not the run's log")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["nodes"] <= 32:
            raise CommandError("--nodes must be between 1 and 32")
        if not 1 <= options["rounds"] <= 1000:
            raise CommandError("--rounds must be between 1 and 1000")
        services.data_dirs_ensure()
        call_command("migrate", interactive=False, verbosity=0)
        started: list[subprocess.Popen[bytes]] = []
        started_at = timezone.now()
        base = f"http://127.0.0.1:{options['port']}"
        try:
            if not _reachable(base + "/health"):
                started.append(
                    self._spawn(
                        ["-m", "daphne", "-b", "127.0.0.1", "-p", str(options["port"]), "fedml_site.asgi:application"],
                        "web",
                    )
                )
                _wait(lambda: _reachable(base + "/health"), 30, "the web server did not come up")
            if not selectors.supervisors_alive().exists():
                started.append(self._spawn([str(Path(settings.BASE_DIR) / "manage.py"), "runsupervisor"], "supervisor"))
                _wait(lambda: selectors.supervisors_alive().exists(), 30, "the supervisor did not start")
            self.stdout.write(f"FedML is up: {base}/api/coordinator/health  |  admin: {base}/admin/")
            self.stdout.write(
                "  (sign in first: `python manage.py createsuperuser` for the admin, "
                "`python manage.py api_token create --user <name> --name me` for the API)"
            )
            project = accounts_services.project_ensure_default()
            superlink = selectors.session_live_superlink(project=project)
            if superlink is None:
                superlink = call(services.superlink_request_start, node=accounts_services.coordinator_node_ensure())
                superlink = call(waits.session_wait_spawned, session_id=superlink.id)
            self.stdout.write(f"SuperLink {superlink.status} (pid {superlink.pid}, log {superlink.log_path})")
            node = accounts_services.participant_node_ensure()
            live = list(selectors.session_live_supernodes(node=node))
            if not live:
                for partition in range(options["nodes"]):
                    session = call(
                        participant_services.supernode_request_start,
                        node=node,
                        partition_id=partition,
                        num_partitions=options["nodes"],
                    )
                    session = call(waits.session_wait_spawned, session_id=session.id)
                    self.stdout.write(
                        f"SuperNode {partition} {session.status} (pid {session.pid}, log {session.log_path})"
                    )
            else:
                self.stdout.write(f"using the {len(live)} SuperNodes already running")
            # Let the SuperNodes register with the SuperLink. One that dies at start-up would
            # leave the run waiting for it until its round timeout: say what happened instead.
            deadline = time.monotonic() + 3
            while not (failed := selectors.sessions_ended_since(node=node, since=started_at)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if failed:
                raise CommandError(f"SuperNode session {failed[0].id} {failed[0].status}: {failed[0].status_detail}")
            run = call(
                services.run_request_start,
                project=project,
                extra_args=[
                    "--run-config",
                    f"num-server-rounds={options['rounds']} min-nodes={min(2, options['nodes'])}",
                ],
                label="local federation",
            )
            run = call(waits.run_wait_spawned, run_id=run.id)
            self.stdout.write(
                f"run {run.id} started: watch {base}/api/coordinator/runs/{run.id}  |  {base}/admin/orchestration/federatedrun/{run.id}/change/"
            )
            run = follow_run(run.id, self.stdout, show_lines=not options["quiet_log"])
            evaluate = (run.metrics or {}).get("evaluate", {})
            final = evaluate.get(str(max((int(k) for k in evaluate), default=0)), {})
            self.stdout.write(
                f"run {run.id} {run.status}; final held-out accuracy {final.get('accuracy', 'n/a')}; "
                f"model {(run.metrics or {}).get('artifact_path', '-')}"
            )
            self.stdout.write(f"logs: {settings.LOG_DIR}  |  run: {base}/api/coordinator/runs/{run.id}")
            if run.status != RunStatus.COMPLETED:
                raise CommandError(f"the run ended {run.status}: {run.status_detail}")
        finally:
            if not options["keep_running"]:
                self._teardown(started)

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        with open_private_append(Path(settings.LOG_DIR) / f"{name}.out") as log:
            return subprocess.Popen(  # noqa: S603 - argv list, no shell
                [sys.executable, *argv],
                cwd=settings.BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=CHILD_UMASK,
            )

    def _teardown(self, started: list[subprocess.Popen[bytes]]) -> None:
        project = accounts_services.project_ensure_default()
        try:
            if selectors.run_live(project=project):
                services.run_request_stop(project=project)
            node = accounts_services.participant_node_ensure()
            for session in selectors.session_live_supernodes(node=node):
                services.session_request_stop(session=session)
            superlink = selectors.session_live_superlink(project=project)
            if superlink is not None:
                services.session_request_stop(session=superlink)
                waits.session_wait_ended(session_id=superlink.id, timeout=60)
        except Exception as exc:  # still stop what we started
            self.stderr.write(f"stopping the federation: {exc}")
        for proc in reversed(started):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stdout.write("local federation stopped")


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
            return True
    except OSError:
        return False


def _wait(predicate: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise CommandError(message)
        time.sleep(0.2)
