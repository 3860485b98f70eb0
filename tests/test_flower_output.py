"""Reading what Flower prints: its run id and `flwr ... --format json` answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration import flower
from orchestration.flower import StreamedLines

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- output parsing
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Successfully started run 123", "123"),
        ("\x1b[92mINFO\x1b[0m :   🎊 Successfully started run 8723456789012345678", "8723456789012345678"),
        ('{"success": true, "run-id": 123}', "123"),
        ('  {"success": true, "run-id": 42}  ', "42"),
    ],
)
def test_parse_run_started_reads_plain_and_json_forms(line, expected):
    assert flower.parse_run_started(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Starting run",
        '{"success": false, "run-id": 123}',
        '{"success": true, "run-id": null}',
        '{"success": true, "run-id": 12',
        "Successfully started run abc",
        "",
    ],
)
def test_parse_run_started_ignores_other_lines(line):
    assert flower.parse_run_started(line) is None


LS_SAMPLE = {
    "success": True,
    "runs": [
        {
            "run-id": 42,
            "fab-id": "fedml/fedml-flower-app",
            "fab-name": "fedml-flower-app",
            "fab-version": "1.0.0",
            "fab-hash": "abc123",
            "status": "finished:completed",
            "status-details": "N/A",
            "elapsed": "00:00:12",
            "pending-at": "2025-01-01 10:00:00Z",
            "starting-at": "2025-01-01 10:00:01Z",
            "running-at": "2025-01-01 10:00:02Z",
            "finished-at": "2025-01-01 10:00:14Z",
        }
    ],
}


# `flwr ls --format json` prints through rich's print_json: indented over many lines.
LS_TEXT = json.dumps(LS_SAMPLE, indent=2)


@pytest.mark.parametrize("stdout", [LS_TEXT, json.dumps(LS_SAMPLE)])
def test_parse_ls_json_reads_status_sub_status_and_details(stdout):
    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result == flower.FlowerRunStatus(status="finished", sub_status="completed", details="N/A")
    assert result.finished


def test_parse_ls_json_skips_plain_lines_before_the_json():
    stdout = "Loading project configuration...\nSuccess\n" + LS_TEXT + "\n"

    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result is not None
    assert (result.status, result.sub_status) == ("finished", "completed")


def test_parse_ls_json_skips_a_preceding_log_line_that_contains_braces():
    # The supervisor captures stderr with stdout: a warning mentioning a dict comes first.
    stdout = "WARNING :   Unknown keys in config: {'foo'}\n" + LS_TEXT

    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result is not None
    assert result.sub_status == "completed"


def test_parse_ls_json_skips_a_trailing_line_after_the_json():
    # stderr arrives interleaved with stdout in the captured lines.
    stdout = LS_TEXT + "\nWARNING :   connection closed\n"

    result = flower.parse_ls_json(stdout, flower_run_id="42")

    assert result is not None
    assert result.sub_status == "completed"


def test_parse_ls_json_running_run_is_not_finished():
    sample = {"success": True, "runs": [{**LS_SAMPLE["runs"][0], "status": "running", "status-details": ""}]}

    result = flower.parse_ls_json(json.dumps(sample, indent=2), flower_run_id="42")

    assert result == flower.FlowerRunStatus(status="running", sub_status="", details="")
    assert not result.finished


@pytest.mark.parametrize(
    "stdout",
    [
        "",
        "no json here",
        '{"success": false, "error-message": "no such run"}',
        '{"success": true, "runs": [',
        json.dumps({"success": True, "runs": [{**LS_SAMPLE["runs"][0], "run-id": 43}]}),
    ],
)
def test_parse_ls_json_returns_none_when_flower_said_nothing_usable(stdout):
    assert flower.parse_ls_json(stdout, flower_run_id="42") is None


def test_strip_ansi_removes_colour_codes_osc_sequences_and_carriage_returns():
    text = "\x1b[92mINFO\x1b[0m : \x1b[1;31mround\x1b[22m 1\r\x1b]0;title\x07 done\x1b[2K"

    assert flower.strip_ansi(text) == "INFO : round 1 done"
    assert flower.strip_ansi("plain [brackets] stay") == "plain [brackets] stay"


def _kept(lines: StreamedLines, texts: list[str]) -> list[str]:
    return [t for t in texts if lines.keep("stdout", t)]


def test_streamed_lines_keep_everything_flwr_run_prints_and_remember_the_runs_log_after_its_run_id() -> None:
    first = StreamedLines()
    texts = ["Loading project", "Successfully started run 42", "line 1", "line 2"]
    assert _kept(first, texts) == texts
    assert first.keep("stderr", "INFO : a Flower log line") is True
    assert len(first.saved) == 2  # the run's log: what follows Flower's run id on stdout


def test_a_replay_drops_only_the_lines_that_repeat_what_was_saved_in_order() -> None:
    first = StreamedLines()
    _kept(first, ["Successfully started run 42", "line 1", "line 2"])
    replay = StreamedLines(saved=first.saved)
    using = "Using SuperLink: production (127.0.0.1:9093)"  # `flwr log`'s own first line
    assert _kept(replay, [using, "line 1", "line 2", "line 3"]) == [using, "line 3"]
    assert replay.skipped == 2
    again = StreamedLines(saved=replay.saved)  # a second replay repeats all three
    assert _kept(again, ["line 1", "line 2", "line 3", "line 4"]) == ["line 4"]


def test_a_replay_that_prints_an_error_instead_keeps_it() -> None:
    first = StreamedLines()
    _kept(first, ["Successfully started run 42", "line 1", "line 2"])
    replay = StreamedLines(saved=first.saved)
    texts = ["Error: could not connect to the SuperLink"]
    assert _kept(replay, texts) == texts  # never a line lost to a guess
    assert replay.skipped == 0


def test_once_a_replay_differs_from_what_was_saved_every_later_line_is_kept() -> None:
    first = StreamedLines()
    _kept(first, ["Successfully started run 42", "line 1", "line 2", "line 3"])
    replay = StreamedLines(saved=first.saved)
    assert _kept(replay, ["line 1", "line 2 (changed)", "line 3"]) == ["line 2 (changed)", "line 3"]
