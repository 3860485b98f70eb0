from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.management.base import call
from orchestration import services


def _days(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 36500:
        raise CommandError(f"--older-than-days: a whole number of days from 1 to 36500, got {value!r}")
    return int(value)


class Command(BaseCommand):
    help = (
        "Remove Flower's scratch homes of processes that ended, idle app copies (one per run) in the homes "
        "of live ones, old project events and heartbeats of long-gone supervisors. Log lines, runs, "
        "sessions and metrics are the record and are kept."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than-days", required=True, help="only what ended this many days ago or earlier")
        parser.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = _days(str(options["older_than_days"]))
        report = call(services.history_prune, older_than=timedelta(days=days), dry_run=options["dry_run"])
        verb = "would remove" if options["dry_run"] else "removed"
        for path in report.flower_dirs:
            self.stdout.write(f"{verb} {path}")
        self.stdout.write(
            f"{verb} {len(report.flower_dirs)} Flower dir(s), {report.project_events} project event(s), "
            f"{report.supervisor_heartbeats} supervisor heartbeat(s) older than {days} day(s)"
        )
