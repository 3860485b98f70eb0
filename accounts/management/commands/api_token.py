from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.management.base import call


class Command(BaseCommand):
    help = "Create an API token for a user (printed once) or revoke one by its prefix."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create")
        create.add_argument("--user", required=True)
        create.add_argument("--name", required=True)
        revoke = sub.add_parser("revoke")
        revoke.add_argument("--prefix", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = f"cli:{getpass.getuser()}"
        if options["action"] == "create":
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"--user: no user named {options['user']!r}")
            token, secret = call(services.api_token_create, user=user, name=options["name"], actor=actor, via="command")
            self.stdout.write(f"token {token.prefix} for {user} (shown once, store it now):")
            self.stdout.write(secret)
        else:
            token = call(services.api_token_revoke, prefix=options["prefix"], actor=actor, via="command")
            self.stdout.write(f"token {token.prefix} revoked")
