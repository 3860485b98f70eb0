"""Faults tests inject into real parts: a database this process cannot reach."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection

from tests.stack import ROOT, free_port


@contextlib.contextmanager
def unreachable_database() -> Iterator[None]:
    """The real database made unreachable for this process: PostgreSQL on a port nothing listens
    on, SQLite in a directory that does not exist. Restored afterwards."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = str(free_port())
    else:
        connection.settings_dict["NAME"] = str(ROOT / "no-such-dir" / "db.sqlite3")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
