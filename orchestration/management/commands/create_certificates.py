from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orchestration.certificates import create_certificates

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HOST_RE = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")


class Command(BaseCommand):
    help = (
        "Create a CA and the SuperLink's server certificate in the certificates directory. "
        "Start the SuperLink with insecure=false and certificates_path=<name>; SuperNodes use <name>/ca.crt."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", default="superlink", help="subdirectory of FEDML_CERTIFICATES_DIR")
        parser.add_argument("--host", action="append", default=[], help="DNS name or IP the SuperLink is reached at")
        parser.add_argument("--days", type=int, default=365)
        parser.add_argument("--force", action="store_true", help="replace existing certificates")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        if not NAME_RE.match(name):
            raise CommandError("--name must be 1-64 letters, digits, '.', '_' or '-'")
        for host in options["host"]:
            if not HOST_RE.match(host):
                raise CommandError(f"--host: {host!r} is not a host name or IP address")
        if not 1 <= options["days"] <= 3650:
            raise CommandError("--days must be between 1 and 3650")
        directory = settings.CERTIFICATES_DIR / name
        if (directory / "server.pem").exists() and not options["force"]:
            raise CommandError(f"{directory} already holds certificates (use --force to replace them)")
        certs = create_certificates(directory=directory, hosts=options["host"], days=options["days"])
        self.stdout.write(f"certificates written to {certs.directory} (CA: {certs.ca_cert})")
