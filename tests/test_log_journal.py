"""The log writer through a database outage: lines wait in a journal, numbered, and are back-filled
in order once the database answers; barriers wait for the back-fill; a journal left by a stopped
writer is back-filled by the next one without duplicates. Django-free, like the writer."""

from __future__ import annotations

import threading
from pathlib import Path

from orchestration.journal import Journal
from orchestration.logpipe import LogWriter, Owner
from tests.test_log_writer import RUN, SESSION, MemoryLog, line


def _writer(db: MemoryLog, journal_dir: Path, **kwargs: object) -> LogWriter:
    writer = LogWriter(
        append=db.append, last_seq=db.last_seq, recent_lines=50, release=db.release, journal_dir=journal_dir, **kwargs
    )
    return writer


def _wait_until(condition, what: str) -> None:  # noqa: ANN001
    done = threading.Event()
    for _ in range(2000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def test_an_outage_of_any_length_loses_no_line_and_back_fills_them_gap_free(tmp_path: Path) -> None:
    db = MemoryLog(down=True)
    db.last[(None, "r1")] = 7
    writer = _writer(db, tmp_path / "journal")
    writer.start()
    try:
        writer.open(RUN, tmp_path / "run.log")
        writer.open(SESSION, None)
        for i in range(1, 3001):  # more than one batch, while every append is refused
            writer.put(line(RUN, f"run {i}"))
            if i % 3 == 0:
                writer.put(line(SESSION, f"session {i}"))
        _wait_until(lambda: writer.lines_journalled == 4000, "every line journalled")
        _wait_until(lambda: db.refused >= 3, "the database retried with backoff")

        assert db.appended == []
        assert (tmp_path / "run.log").read_text().count("\n") == 3000  # the log file never waits
        assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == ["run-r1.jsonl", "session-s1.jsonl"]

        db.down = False
        assert writer.flush(timeout=30)
    finally:
        writer.stop()
        writer.join(timeout=10)

    assert db.seqs(run_id="r1") == [(7 + i, f"run {i}") for i in range(1, 3001)]
    assert db.seqs(session_id="s1") == [(n, f"session {3 * n}") for n in range(1, 1001)]
    assert list((tmp_path / "journal").iterdir()) == []  # back-filled journals are removed


def test_lines_after_the_outage_wait_behind_the_journal_and_keep_their_order(tmp_path: Path) -> None:
    db = MemoryLog(down=True)
    writer = _writer(db, tmp_path / "journal")
    writer.start()
    try:
        writer.open(RUN, None)
        writer.put(line(RUN, "during"))
        _wait_until(lambda: writer.lines_journalled == 1, "journalled")
        db.down = False
        writer.put(line(RUN, "after"))
        assert writer.flush(timeout=30)
    finally:
        writer.stop()
        writer.join(timeout=10)

    assert db.seqs(run_id="r1") == [(1, "during"), (2, "after")]


def test_a_barrier_waits_for_the_back_fill_of_the_lines_queued_before_it(tmp_path: Path) -> None:
    db = MemoryLog(down=True)
    writer = _writer(db, tmp_path / "journal")
    ran: list[list[tuple[int, str]]] = []
    writer.start()
    try:
        writer.open(RUN, None)
        writer.put(line(RUN, "last line"))
        writer.barrier(lambda: ran.append(db.seqs(run_id="r1")))
        _wait_until(lambda: db.refused >= 2, "a retry refused")
        assert ran == []  # an exit handed over now would end a row before its last line is saved

        db.down = False
        assert writer.flush(timeout=30)
    finally:
        writer.stop()
        writer.join(timeout=10)

    assert ran == [[(1, "last line")]]


def test_a_journal_left_by_a_stopped_writer_is_back_filled_by_the_next_without_duplicates(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    db = MemoryLog(down=True)
    first = _writer(db, journal_dir)
    first.start()
    first.open(RUN, None)
    for i in range(1, 11):
        first.put(line(RUN, f"line {i}"))
    _wait_until(lambda: first.lines_journalled == 10, "journalled")
    first.stop()
    first.join(timeout=10)
    # The old supervisor died mid-back-fill: the database already holds the first four.
    db.down = False
    db.append(session_id=None, run_id="r1", first_seq=1, lines=[line(RUN, f"line {i}") for i in range(1, 5)], recent="")
    db.last[(None, "r1")] = 4
    with (journal_dir / "run-r1.jsonl").open("a") as cut:
        cut.write('{"seq": 11, "stream": "stdout", "sou')  # killed mid-write

    second = _writer(db, journal_dir)
    assert second.recover() == [Owner("run", "r1")]
    second.start()
    try:
        assert second.flush(timeout=30)
    finally:
        second.stop()
        second.join(timeout=10)

    assert db.seqs(run_id="r1") == [(i, f"line {i}") for i in range(1, 11)]
    assert list(journal_dir.iterdir()) == []


def test_a_reopened_journal_continues_its_numbers_on_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "run-r1.jsonl"
    path.write_text(
        '{"seq": 1, "stream": "stdout", "source": "run", "ts": "2026-12-01T00:00:00+00:00", "text": "a"}\n{"se'
    )

    journal = Journal.reopen(path)

    assert journal.last_seq == 1
    entries, _offset = journal.peek(10)
    assert [(e.seq, e.text) for e in entries] == [(1, "a")]
    journal.close()
