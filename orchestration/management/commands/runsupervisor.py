from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from orchestration import services
from orchestration.supervisor import FlowerLauncher, Supervisor


class Command(BaseCommand):
    help = "Run the supervisor: the only process that starts, watches and stops Flower's processes."

    def handle(self, *args: Any, **options: Any) -> None:
        services.data_dirs_ensure()
        stop = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        supervisor = Supervisor(launcher=FlowerLauncher())
        self.stdout.write(
            f"supervisor {supervisor.id} running (pid-reaper: {'on' if supervisor.subreaper else 'off'}); Ctrl-C stops it and its processes"
        )
        self.stdout.flush()
        supervisor.run_forever(stop)
        self.stdout.write("supervisor stopped")
