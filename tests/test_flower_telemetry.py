"""The telemetry channel: what the ServerApp writes (flower_app/fedml_app/telemetry.py) is what
FedML's reader accepts, and nothing outside the contract is."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from orchestration.flower.telemetry import (
    MAX_RECORD_BYTES,
    ArtifactRecord,
    ChannelReader,
    MetricsRecord,
    NodesRecord,
    channel_file,
    parse_record,
)

APP_TELEMETRY = Path(__file__).resolve().parent.parent / "flower_app" / "fedml_app" / "telemetry.py"


def app_telemetry() -> ModuleType:
    """The ServerApp's module, loaded by path (flower_app is not a package of FedML's)."""
    spec = importlib.util.spec_from_file_location("fedml_app_telemetry_under_test", APP_TELEMETRY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def good_metrics(**changes) -> dict:
    record = {
        "v": 1,
        "kind": "metrics",
        "fedml_run_id": "r",
        "flwr_run_id": "12",
        "round": 2,
        "num_rounds": 3,
        "phase": "train",
        "aggregated": {"loss": 0.5},
        "per_node": {"1": {"loss": 0.4, "num-examples": 10}},
    }
    record.update(changes)
    return record


def test_what_the_server_app_writes_is_what_fedml_reads(tmp_path):
    telemetry = app_telemetry()
    channel = telemetry.Channel.for_run("run-1", environ={"FEDML_TELEMETRY_DIR": str(tmp_path)})
    channel.write(
        telemetry.metrics_record(
            fedml_run_id="run-1",
            flwr_run_id=12,
            server_round=1,
            num_rounds=2,
            phase="evaluate",
            aggregated={"accuracy": 0.9, "nan": float("nan"), "hist": [1, 2]},
            per_node={"5": {"accuracy": 0.8}},
        )
    )
    channel.write(telemetry.artifact_record(fedml_run_id="run-1", flwr_run_id=12, path="/m.pt"))

    path = channel_file(tmp_path, "run-1")
    assert channel.path == path
    assert path.stat().st_mode & 0o777 == 0o600
    records = [parse_record(line) for line in ChannelReader(path).read()]
    assert records == [
        MetricsRecord(
            fedml_run_id="run-1",
            flwr_run_id="12",
            round=1,
            num_rounds=2,
            phase="evaluate",
            aggregated={"accuracy": 0.9, "nan": None},
            per_node={"5": {"accuracy": 0.8}},
        ),
        ArtifactRecord(fedml_run_id="run-1", flwr_run_id="12", path="/m.pt"),
    ]


def test_outside_fedml_the_server_app_writes_nothing_and_prints_nothing(tmp_path, capsys):
    telemetry = app_telemetry()
    channel = telemetry.Channel.for_run("run-1", environ={})
    channel.write(telemetry.artifact_record(fedml_run_id="run-1", flwr_run_id=1, path="/m.pt"))

    assert channel.path is None
    assert capsys.readouterr() == ("", "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "record",
    [
        good_metrics(v=2),
        good_metrics(kind="other"),
        good_metrics(phase="predict"),
        good_metrics(round="1"),
        good_metrics(round=0),
        good_metrics(round=True),
        good_metrics(num_rounds=1),  # fewer rounds than this one
        good_metrics(fedml_run_id=5),
        good_metrics(flwr_run_id=12),  # a string of digits, as Flower's ids travel
        good_metrics(flwr_run_id="12; DROP"),
        good_metrics(aggregated=[1]),
        good_metrics(per_node="x"),
        {"v": 1, "kind": "artifact", "fedml_run_id": "r", "path": 3},
        {"v": 1, "kind": "artifact", "fedml_run_id": "r", "path": ""},
        {"v": 1, "kind": "artifact", "fedml_run_id": "r", "path": "/a\x00b"},
    ],
)
def test_records_outside_the_contract_are_refused(record):
    assert parse_record(json.dumps(record).encode()) is None


def test_a_sites_malformed_entries_are_dropped_and_the_round_kept() -> None:
    """Metric keys come from the sites' replies: one odd key must not cost every other figure."""
    record = parse_record(
        json.dumps(
            good_metrics(
                aggregated={"loss": 0.5, "x" * 101: 1.0, "": 2.0, "flag": True, "text": "0.5", "huge": 10**400},
                per_node={"1": {"loss": 0.4}, "2": {"loss": [1]}, "3": "not a mapping", "4": {"y" * 101: 1}},
            )
        ).encode()
    )

    assert isinstance(record, MetricsRecord)
    assert record.aggregated == {"loss": 0.5}
    assert record.per_node == {"1": {"loss": 0.4}, "2": {}, "4": {}}


def test_at_most_200_metrics_are_kept_per_mapping() -> None:
    record = parse_record(json.dumps(good_metrics(aggregated={f"m{i}": 1.0 for i in range(250)})).encode())

    assert isinstance(record, MetricsRecord) and len(record.aggregated) == 200


def test_the_server_app_keeps_within_the_same_limits() -> None:
    telemetry = app_telemetry()
    cleaned = telemetry.clean_metrics({"x" * 101: 1.0, **{f"m{i}": float(i) for i in range(250)}, "big": 10**400})

    assert len(cleaned) == 200 and all(len(key) <= 100 for key in cleaned)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null", b"[" * 5000 + b"]" * 5000])
def test_garbage_and_deep_nesting_are_refused_without_raising(raw):
    assert parse_record(raw) is None


def test_the_reader_yields_whole_lines_only_and_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "r.jsonl"
    reader = ChannelReader(path)
    assert reader.read() == []  # not there yet

    path.write_bytes(b'{"a":1}\n{"b":')
    assert reader.read() == [b'{"a":1}']
    with path.open("ab") as f:
        f.write(b"2}\n")
    assert reader.read() == [b'{"b":2}']
    assert reader.read() == []


def test_an_over_long_line_is_dropped_and_the_next_one_read(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"x" * (MAX_RECORD_BYTES + 10))
    reader = ChannelReader(path)
    assert reader.read() == []
    with path.open("ab") as f:
        f.write(b"tail of the long one\n" + b'{"ok":1}\n')

    assert reader.read() == [b'{"ok":1}']


def test_the_reader_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "r.jsonl")

    with pytest.raises(OSError, match="not a regular file"):
        ChannelReader(tmp_path / "r.jsonl").read()


def test_the_reader_does_not_follow_a_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text('{"v":1}\n')
    os.symlink(secret, tmp_path / "r.jsonl")

    with pytest.raises(OSError):
        ChannelReader(tmp_path / "r.jsonl").read()


def test_the_nodes_a_run_waits_for_travel_as_the_server_app_wrote_them(tmp_path):
    telemetry = app_telemetry()
    channel = telemetry.Channel.for_run("run-1", environ={"FEDML_TELEMETRY_DIR": str(tmp_path)})
    channel.write(telemetry.nodes_record(fedml_run_id="run-1", flwr_run_id=12, connected=[22, 11], required=3))
    channel.write(
        telemetry.nodes_record(fedml_run_id="run-1", flwr_run_id=12, connected=[11], required=3, timed_out=True)
    )

    waiting, gave_up = [parse_record(line) for line in ChannelReader(channel_file(tmp_path, "run-1")).read()]
    assert waiting == NodesRecord(
        fedml_run_id="run-1", flwr_run_id="12", connected=("11", "22"), required=3, timed_out=False
    )
    assert waiting.waiting and gave_up.timed_out and gave_up.connected == ("11",)


@pytest.mark.parametrize(
    "changes",
    [
        {"connected": "11"},
        {"connected": [11]},  # Flower's node ids travel as strings of digits
        {"connected": ["11; DROP"]},
        {"required": "2"},
        {"required": -1},
        {"required": True},
        {"timed_out": "yes"},
    ],
)
def test_nodes_records_outside_the_contract_are_refused(changes):
    record = {"v": 1, "kind": "nodes", "fedml_run_id": "r", "flwr_run_id": "12", "connected": ["11"], "required": 2}
    assert parse_record(json.dumps(record).encode()) is not None  # the change alone is refused
    assert parse_record(json.dumps({**record, **changes}).encode()) is None
