"""`manage.py user_create --email E [--display-name N] [--staff] [--password-stdin]`: a FedML user who
signs in with email and password (the admin, the embedded Supabase Auth), and its person.

The password is read from standard input, never from the command line (which `ps` and shell
histories show to others). Without --password-stdin the user has no usable password until one is
set in the admin. Prints the person id: the `sub` of the user's access tokens.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from core.errors import ApplicationError

OPTION_OF_FIELD = {"email": "--email", "display_name": "--display-name", "password": "--password-stdin"}


class Command(BaseCommand):
    help = "Create a user (username = email) and its person; prints the person id."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", required=True, help="the sign-in email, also the username")
        parser.add_argument("--display-name", help="the name shown (default: the email)")
        parser.add_argument("--staff", action="store_true", help="staff in the admin, role admin (else client)")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from the first line of standard input"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = None
        if options["password_stdin"]:
            stdin = options.get("stdin") or sys.stdin
            password = stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("--password-stdin: no password on standard input")
        try:
            person = services.person_create_with_user(
                email=options["email"],
                display_name=options["display_name"],
                staff=options["staff"],
                password=password,
                actor=f"cli:{getpass.getuser()}",
                via="command",
            )
        except ApplicationError as exc:
            option = OPTION_OF_FIELD.get(exc.field or "", "--email")
            raise CommandError(f"{option}: {exc.message}") from None
        self.stdout.write(str(person.pk))
