from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.management.base import call
from accounts.models import Project
from orchestration import flower, services
from orchestration.services.runs import PROJECT_RUN_CONFIG


class Command(BaseCommand):
    help = (
        "Set a project's run-config defaults: the values its runs use where the start request names none "
        "(e.g. `min-nodes=1 num-server-rounds=3`). Without values, show them; --clear removes them."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument(
            "values", nargs="*", help='key=value pairs as `--run-config` takes them (quote strings: k="v")'
        )
        parser.add_argument("--clear", action="store_true", help="remove every default")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with slug {options['project']!r}")
        pairs: dict[str, str] = {}
        for item in options["values"]:
            try:
                pairs.update(flower.parse_run_config(item, flag="values", field="values"))
            except flower.FlowerArgError as exc:
                raise CommandError(f"values: {exc}") from None
        if pairs or options["clear"]:
            actor = f"cli:{getpass.getuser()}"
            call(services.project_run_config_set, project=project, values=pairs, actor=actor, via="command")
            project.refresh_from_db()
        defaults = (project.config or {}).get(PROJECT_RUN_CONFIG) or {}
        if not defaults:
            self.stdout.write(f"{project.slug}: no run-config defaults (the app's own apply)")
        for key, value in sorted(defaults.items()):
            self.stdout.write(f"{project.slug}: {key} = {value!r}")
