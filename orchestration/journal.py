"""The log writer's journal: an owner's lines the database could not take yet, on disk, in order,
each with the sequence number it will have.

While an owner has a journal every new line of it goes there too (so order and numbering never
change), and the writer back-fills the database from it in batches once the database answers.
Numbers are assigned when a line is journalled: after a crash the next supervisor skips every
entry the database already holds, so a back-fill never duplicates nor leaves a gap.

Django-free, like the log writer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from orchestration.private_files import open_private_append

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    seq: int
    stream: str
    source: str
    ts: datetime
    text: str


def journal_name(kind: str, owner_id: Any) -> str:
    return f"{kind}-{owner_id}.jsonl"


def parse_journal_name(name: str) -> tuple[str, str] | None:
    """(kind, owner id) of a journal file, or None for anything else in the directory."""
    if not name.endswith(".jsonl"):
        return None
    kind, _, owner_id = name.removesuffix(".jsonl").partition("-")
    return (kind, owner_id) if kind in {"session", "run"} and owner_id else None


class Journal:
    """One owner's pending lines. Used by the log writer's thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: TextIO | None = open_private_append(path)
        self._offset = 0  # bytes of the file already in the database
        self.last_seq = 0  # the number of the last entry written (0: none yet)

    @classmethod
    def reopen(cls, path: Path) -> Journal:
        """A journal a supervisor left behind (it stopped, or died, before the database answered)."""
        with path.open("rb") as source:
            data = source.read()
        journal = cls(path)
        if data and not data.endswith(b"\n"):  # cut mid-line: the next entry starts on a line of its own
            assert journal._out is not None
            journal._out.write("\n")
            journal._out.flush()
        for raw in data.splitlines():
            entry = _parse(raw) if raw.strip() else None
            if entry is not None:
                journal.last_seq = max(journal.last_seq, entry.seq)
        return journal

    def write(self, entries: list[Entry]) -> None:
        out = self._out
        assert out is not None, "journal closed"
        out.write(
            "".join(
                json.dumps(
                    {"seq": e.seq, "stream": e.stream, "source": e.source, "ts": e.ts.isoformat(), "text": e.text}
                )
                + "\n"
                for e in entries
            )
        )
        out.flush()
        if entries:
            self.last_seq = entries[-1].seq

    def peek(self, limit: int) -> tuple[list[Entry], int]:
        """Up to `limit` entries not in the database yet, and the offset just past them.

        A line without its newline (a crash mid-write) or that is not an entry is skipped: the
        log file holds its text in any case."""
        entries: list[Entry] = []
        with self.path.open("rb") as source:
            source.seek(self._offset)
            offset = self._offset
            while len(entries) < limit:
                raw = source.readline()
                if not raw.endswith(b"\n"):
                    break
                offset += len(raw)
                entry = _parse(raw)
                if entry is not None:
                    entries.append(entry)
        return entries, offset

    def commit(self, offset: int) -> None:
        """The entries before `offset` are in the database."""
        self._offset = offset

    def drained(self) -> bool:
        return self._offset >= self.path.stat().st_size

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def remove(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        self.path.unlink(missing_ok=True)


def _parse(raw: bytes) -> Entry | None:
    try:
        data = json.loads(raw)
        return Entry(
            seq=int(data["seq"]),
            stream=str(data["stream"]),
            source=str(data["source"]),
            ts=datetime.fromisoformat(data["ts"]),
            text=str(data["text"]),
        )
    except (ValueError, KeyError, TypeError):
        logger.warning("skipping an unreadable journal entry")
        return None
