"""The log hot path: a batch of lines appended in one transaction, then a doorbell ring."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db import connection, transaction

from orchestration import doorbell
from orchestration.models import (
    FederatedRun,
    LogLine,
    NodeSession,
)


class NewLogLine(Protocol):
    """What a line to append must carry (the log writer's own line objects, or a test's)."""

    @property
    def stream(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class LogLineIn:
    """A plain line to append, for callers that have no line object of their own."""

    stream: str
    source: str
    ts: datetime
    text: str


def log_lines_append(
    *, session_id: Any = None, run_id: Any = None, first_seq: int, lines: Iterable[NewLogLine], recent: str
) -> None:
    """Append a batch in one transaction; the caller owns the gap-free seq counter."""
    lines = list(lines)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # COPY is several times faster than a multi-row INSERT: this is the log hot path.
            with connection.cursor() as cursor:
                copy_sql = "COPY log_lines (session_id, run_id, seq, stream, source, ts, text) FROM STDIN"
                with cursor.cursor.copy(copy_sql) as copy:
                    for i, line in enumerate(lines):
                        copy.write_row(
                            (session_id, run_id, first_seq + i, line.stream, line.source, line.ts, line.text)
                        )
        else:
            rows = [
                LogLine(
                    session_id=session_id,
                    run_id=run_id,
                    seq=first_seq + i,
                    stream=line.stream,
                    source=line.source,
                    ts=line.ts,
                    text=line.text,
                )
                for i, line in enumerate(lines)
            ]
            LogLine.objects.bulk_create(rows, batch_size=500)
        # The newest lines (the `log_stream` column), rewritten once per batch (never per line).
        if session_id is not None:
            NodeSession.objects.filter(pk=session_id).update(log_stream=recent)
            group = doorbell.log_group("session", session_id)
        else:
            FederatedRun.objects.filter(pk=run_id).update(log_stream=recent)
            group = doorbell.log_group("run", run_id)
        transaction.on_commit(lambda: doorbell.ring(group))
