"""The Flower app's pyproject: `current-run-id` written atomically, byte for byte."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from orchestration import flower
from orchestration.flower import app as flower_app_module

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A copy of the real app's pyproject, with no run id (a live supervisor may have set one)."""
    target = tmp_path / "flower_app"
    target.mkdir()
    text = (ROOT / "flower_app" / "pyproject.toml").read_text(encoding="utf-8")
    text, count = re.subn(r'(?m)^current-run-id = "[^"]*"', 'current-run-id = ""', text)
    assert count == 1
    (target / "pyproject.toml").write_text(text, encoding="utf-8")
    return target


# ---------------------------------------------------------------- the app's pyproject
def test_set_current_run_id_changes_only_that_line_and_keeps_every_other_byte(app_dir):
    path = app_dir / "pyproject.toml"
    before = path.read_bytes().splitlines(keepends=True)

    assert flower.set_current_run_id(app_dir, "1b4e28ba-2fa1-11d2-883f-0016d3cca427") is True

    after = path.read_bytes().splitlines(keepends=True)
    assert len(after) == len(before)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert len(changed) == 1
    old, new = changed[0]
    assert old.startswith(b'current-run-id = ""')
    assert new.startswith(b'current-run-id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"')
    assert new.rstrip().endswith(b"# FedML run UUID, written by FedML before each run")
    assert flower.read_app_config(app_dir)["current-run-id"] == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert flower.read_app_config(app_dir)["num-server-rounds"] == 5


def test_set_current_run_id_only_if_changes_the_value_only_while_it_still_holds_it(app_dir):
    assert flower.set_current_run_id(app_dir, "run-a") is True

    assert flower.set_current_run_id(app_dir, "", only_if="run-b") is False
    assert flower.read_app_config(app_dir)["current-run-id"] == "run-a"

    assert flower.set_current_run_id(app_dir, "", only_if="run-a") is True
    assert flower.read_app_config(app_dir)["current-run-id"] == ""


def test_set_current_run_id_round_trip_restores_the_original_file(app_dir):
    path = app_dir / "pyproject.toml"
    original = path.read_bytes()

    flower.set_current_run_id(app_dir, "run-a")
    flower.set_current_run_id(app_dir, "", only_if="run-a")

    assert path.read_bytes() == original


def test_set_current_run_id_is_atomic_leaves_no_temp_file_and_keeps_the_mode(app_dir):
    path = app_dir / "pyproject.toml"
    os.chmod(path, 0o640)
    inode_before = path.stat().st_ino

    flower.set_current_run_id(app_dir, "run-a")

    assert sorted(p.name for p in app_dir.iterdir()) == ["pyproject.toml"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # Replaced, not rewritten in place: a reader sees the old or the new file, never half.
    assert path.stat().st_ino != inode_before


def test_set_current_run_id_leaves_the_file_untouched_and_no_temp_file_when_writing_fails(app_dir, monkeypatch):
    path = app_dir / "pyproject.toml"
    original = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(flower_app_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        flower.set_current_run_id(app_dir, "run-a")

    assert path.read_bytes() == original
    assert sorted(p.name for p in app_dir.iterdir()) == ["pyproject.toml"]
