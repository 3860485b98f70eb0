"""The log writer on its own: a Django-free leaf whose database comes in as two callables.

These tests give it an in-memory "database" (the lists below), so they need no Django at all.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestration.logpipe import Line, LogWriter, Owner
from tests.stack import ROOT

RUN = Owner("run", "r1")
SESSION = Owner("session", "s1")


@dataclass
class MemoryLog:
    """Stands in for `services.log_lines_append` / `selectors.log_last_seq`."""

    last: dict[tuple[Any, Any], int] = field(default_factory=dict)
    appended: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    released: int = 0
    down: bool = False  # an outage of any length: every append fails until it is cleared
    refused: int = 0

    def append(self, *, session_id: Any, run_id: Any, first_seq: int, lines: list[Line], recent: str) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionError("the database is restarting")
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("the database went away")
        texts = [line.text for line in lines]
        self.appended.append(
            {"session_id": session_id, "run_id": run_id, "first_seq": first_seq, "texts": texts, "recent": recent}
        )

    def last_seq(self, *, session_id: Any = None, run_id: Any = None) -> int:
        return self.last.get((session_id, run_id), 0)

    def release(self) -> None:
        self.released += 1

    def seqs(self, **owner: Any) -> list[tuple[int, str]]:
        found = []
        for batch in self.appended:
            if all(batch[key] == value for key, value in owner.items()):
                found += [(batch["first_seq"] + i, text) for i, text in enumerate(batch["texts"])]
        return found


@pytest.fixture
def db() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def start_writer(db: MemoryLog) -> Iterator[Any]:
    writers: list[LogWriter] = []

    def start(**kwargs: Any) -> LogWriter:
        options: dict[str, Any] = {
            "append": db.append,
            "last_seq": db.last_seq,
            "recent_lines": 200,
            "release": db.release,
        }
        writer = LogWriter(**{**options, **kwargs})
        writer.start()
        writers.append(writer)
        return writer

    yield start
    for writer in writers:
        writer.stop()
        writer.join(timeout=10)


def line(owner: Owner, text: str, source: str = "fake") -> Line:
    return Line(owner=owner, stream="stdout", source=source, ts=datetime.now(UTC), text=text)


def test_sequence_numbers_continue_gap_free_after_the_last_saved_one(start_writer, db):
    db.last[(None, "r1")] = 41
    writer = start_writer()
    writer.open(RUN, None)
    writer.open(SESSION, None)

    for i in range(1, 6):
        writer.put(line(RUN, f"run {i}"))
        writer.put(line(SESSION, f"session {i}"))
    assert writer.flush()

    assert db.seqs(run_id="r1") == [(41 + i, f"run {i}") for i in range(1, 6)]
    assert db.seqs(session_id="s1") == [(i, f"session {i}") for i in range(1, 6)]
    assert writer.lines_written == 10


def test_a_barrier_runs_after_every_line_queued_before_it_is_saved(start_writer, db):
    writer = start_writer()
    writer.open(RUN, None)
    seen: list[list[tuple[int, str]]] = []

    for i in range(1, 1001):
        writer.put(line(RUN, f"line {i}"))
    writer.barrier(lambda: seen.append(db.seqs(run_id="r1")))
    writer.put(line(RUN, "after the barrier"))
    assert writer.flush()

    assert seen == [[(i, f"line {i}") for i in range(1, 1001)]]
    assert db.seqs(run_id="r1")[-1] == (1001, "after the barrier")


def test_the_tail_keeps_only_the_newest_tail_lines(start_writer, db):
    writer = start_writer(recent_lines=3)
    writer.open(RUN, None)

    for i in range(1, 6):
        writer.put(line(RUN, f"line {i}"))
    assert writer.flush()

    assert db.appended[-1]["recent"] == "line 3\nline 4\nline 5"
    assert writer.recent(RUN) == ["line 3", "line 4", "line 5"]


def test_lines_go_to_the_owners_file_and_close_owner_closes_it_after_its_lines(start_writer, tmp_path: Path):
    writer = start_writer()
    path = tmp_path / "logs" / "run.log"
    writer.open(RUN, path)

    writer.put(line(RUN, "first"))
    writer.put(line(RUN, "second"))
    writer.close_owner(RUN)
    assert writer.flush()

    assert path.read_text(encoding="utf-8") == "first\nsecond\n"
    assert writer.recent(RUN) == []  # closed: no sink any more


def test_a_failed_append_is_retried_after_releasing_the_connection(start_writer, db):
    db.fail_next = 2
    writer = start_writer()
    writer.open(RUN, None)

    writer.put(line(RUN, "kept"))
    assert writer.flush()

    assert db.released == 2
    assert db.seqs(run_id="r1") == [(1, "kept")]


def test_on_saved_hears_each_owners_lines_once_they_are_saved(start_writer, db):
    heard: list[tuple[Owner, list[str], int]] = []
    writer = start_writer(
        on_saved=lambda owner, lines: heard.append((owner, [x.text for x in lines], len(db.appended)))
    )
    writer.open(RUN, None)

    writer.put(line(RUN, "Successfully started run 42", source="run"))
    assert writer.flush()

    assert heard == [(RUN, ["Successfully started run 42"], 1)]


def test_a_failing_hook_does_not_stop_the_pipeline(start_writer, db):
    def broken(owner: Owner, lines: list[Line]) -> None:
        raise RuntimeError("a bug in a hook")

    writer = start_writer(on_saved=broken)
    writer.open(RUN, None)

    writer.put(line(RUN, "one"))
    writer.barrier(lambda: 1 / 0)
    writer.put(line(RUN, "two"))
    assert writer.flush()

    assert db.seqs(run_id="r1") == [(1, "one"), (2, "two")]
    assert writer.is_alive()


def test_lines_of_an_owner_never_opened_are_dropped_not_misnumbered(start_writer, db):
    writer = start_writer()
    writer.open(RUN, None)

    writer.put(line(SESSION, "nobody opened me"))
    writer.put(line(RUN, "mine"))
    assert writer.flush()

    assert db.seqs() == [(1, "mine")]


def test_stop_saves_what_was_queued_then_releases_the_threads_connection(db):
    writer = LogWriter(append=db.append, last_seq=db.last_seq, recent_lines=10, release=db.release)
    writer.start()
    writer.open(RUN, None)
    writer.put(line(RUN, "last words"))
    writer.stop()
    writer.join(timeout=10)

    assert not writer.is_alive()
    assert db.seqs(run_id="r1") == [(1, "last words")]
    assert db.released == 1


def test_opening_an_owner_twice_keeps_its_counter(start_writer, db):
    writer = start_writer()
    writer.open(RUN, None)
    writer.put(line(RUN, "one"))
    assert writer.flush()
    db.last[(None, "r1")] = 0  # a second open must not re-read (and reset) the counter
    writer.open(RUN, None)

    writer.put(line(RUN, "two"))
    assert writer.flush()

    assert db.seqs(run_id="r1") == [(1, "one"), (2, "two")]


def test_puts_from_many_threads_keep_each_threads_order(start_writer, db):
    writer = start_writer()
    owners = [Owner("run", f"r{n}") for n in range(4)]
    for owner in owners:
        writer.open(owner, None)

    def produce(owner: Owner) -> None:
        for i in range(500):
            writer.put(line(owner, f"{owner.id} {i}"))

    threads = [threading.Thread(target=produce, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert writer.flush()

    for owner in owners:
        assert db.seqs(run_id=owner.id) == [(i + 1, f"{owner.id} {i}") for i in range(500)]


def test_the_log_writer_and_procs_import_nothing_of_django_services_or_selectors():
    code = (
        "import sys\n"
        "import orchestration.logpipe, orchestration.procs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'django'"
        " or m.startswith(('orchestration.services', 'orchestration.selectors')))\n"
        "assert not bad, bad\n"
        "assert not hasattr(orchestration.procs, 'selectors'), 'procs names the stdlib selectors module'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)  # noqa: S603
    assert result.returncode == 0, result.stderr
