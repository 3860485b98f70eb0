"""`manage.py prune`: Flower's scratch homes of ended processes, old project events and
heartbeats of gone supervisors go; the record (rows, log lines, metrics) and anything live stays."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import services as accounts_services
from orchestration import services
from orchestration.models import LogLine, ProjectEvent, SupervisorHeartbeat
from tests.factories import (
    FederatedRunFactory,
    NodeEnrollmentFactory,
    NodeSessionFactory,
    SupervisorHeartbeatFactory,
)

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.now() - timedelta(days=40)
RECENTLY = timezone.now() - timedelta(days=2)


@pytest.fixture
def homes(settings, tmp_path: Path) -> Path:
    settings.FLWR_HOME_ROOT = tmp_path / "flwr_home"
    settings.FLWR_HOME_ROOT.mkdir()
    return settings.FLWR_HOME_ROOT


def _home(root: Path, name: str, *, touched: float | None = None) -> Path:
    """A FLWR_HOME as Flower leaves it: a config and an installed app copy."""
    app = root / name / "apps" / "fedml.fedml-flower-app.1.0.0.ec3ce76f"
    app.mkdir(parents=True)
    (root / name / "config.toml").write_text("[superlink]\n", encoding="utf-8")
    (app / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    if touched is not None:
        for dirpath, dirnames, filenames in os.walk(root / name):
            for entry in dirnames + filenames:
                os.utime(os.path.join(dirpath, entry), (touched, touched))
        os.utime(root / name, (touched, touched))
    return root / name


def _prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def test_prune_removes_homes_of_long_ended_sessions_runs_and_enrollments_and_keeps_the_rest(homes):
    old = LONG_AGO.timestamp()
    ended_supernode = NodeSessionFactory(status="stopped", ended_at=LONG_AGO)
    ended_superlink = NodeSessionFactory(kind="superlink", status="exited", ended_at=LONG_AGO)
    ended_run = FederatedRunFactory(status="completed", ended_at=LONG_AGO)
    running = NodeSessionFactory(status="running")
    ended_lately = NodeSessionFactory(status="stopped", ended_at=RECENTLY)
    registered = NodeEnrollmentFactory(status="registered")
    pending = NodeEnrollmentFactory(status="requested")
    gone = _home(homes, f"supernode-{ended_supernode.pk}", touched=old)
    gone_superlink = _home(homes, f"superlink-{ended_superlink.pk}", touched=old)
    gone_run = _home(homes, f"run-{ended_run.pk}", touched=old)
    gone_enrollment = _home(homes, f"enrollment-{registered.pk}", touched=old)
    kept = [
        _home(homes, f"supernode-{running.pk}", touched=old),  # live, however old its files
        _home(homes, f"supernode-{ended_lately.pk}", touched=old),
        _home(homes, f"enrollment-{pending.pk}", touched=old),  # its registration is under way
        _home(homes, f"supernode-{ended_supernode.pk}".replace("supernode", "notes"), touched=old),
        _home(homes, "fake-something", touched=old),
        _home(homes, "run-" + "-" * 36, touched=old),  # not a FedML id
    ]
    recently_written = _home(homes, f"run-{FederatedRunFactory(status='failed', ended_at=LONG_AGO).pk}")

    output = _prune("--older-than-days", "30")

    for path in (gone, gone_superlink, gone_run, gone_enrollment):
        assert not path.exists(), path
        assert f"removed {path}" in output
    for path in [*kept, recently_written]:
        assert (path / "config.toml").is_file(), path
    # The live SuperNode keeps its home; only its idle app copy (no run is live) went too.
    assert not (kept[0] / "apps" / "fedml.fedml-flower-app.1.0.0.ec3ce76f").exists()
    assert "removed 5 Flower dir(s)" in output


def test_prune_deletes_only_old_project_events_and_sequence_numbers_keep_growing(homes):
    project = accounts_services.project_ensure_default()
    for _ in range(3):
        services.event_emit(project_id=project.pk, type="run.status", payload={})
    ProjectEvent.objects.filter(seq__lte=2).update(created_at=LONG_AGO)

    _prune("--older-than-days", "30")

    assert list(ProjectEvent.objects.values_list("seq", flat=True)) == [3]
    assert services.event_emit(project_id=project.pk, type="run.status", payload={}).seq == 4


def test_prune_keeps_heartbeats_that_live_rows_still_name_and_recent_ones(homes):
    forgotten = SupervisorHeartbeatFactory(beat_at=LONG_AGO, stopped_at=LONG_AGO)
    still_named = SupervisorHeartbeatFactory(beat_at=LONG_AGO)
    NodeSessionFactory(status="running", supervisor_id=still_named.pk)
    recent = SupervisorHeartbeatFactory(beat_at=RECENTLY, stopped_at=RECENTLY)

    output = _prune("--older-than-days", "30")

    assert set(SupervisorHeartbeat.objects.values_list("pk", flat=True)) == {still_named.pk, recent.pk}
    assert forgotten.pk not in set(SupervisorHeartbeat.objects.values_list("pk", flat=True))
    assert "1 supervisor heartbeat(s)" in output


def test_prune_never_touches_the_record(homes):
    run = FederatedRunFactory(status="completed", ended_at=LONG_AGO)
    session = NodeSessionFactory(status="stopped", ended_at=LONG_AGO)
    LogLine.objects.create(run=run, seq=1, stream="stdout", source="run", ts=LONG_AGO, text="round 1")
    LogLine.objects.create(session=session, seq=1, stream="stdout", source="supernode", ts=LONG_AGO, text="hello")

    _prune("--older-than-days", "1")

    run.refresh_from_db()
    session.refresh_from_db()
    assert LogLine.objects.count() == 2


def test_prune_dry_run_lists_what_would_go_and_removes_nothing(homes):
    session = NodeSessionFactory(status="stopped", ended_at=LONG_AGO)
    home = _home(homes, f"supernode-{session.pk}", touched=LONG_AGO.timestamp())
    SupervisorHeartbeatFactory(beat_at=LONG_AGO, stopped_at=LONG_AGO)

    output = _prune("--older-than-days", "30", "--dry-run")

    assert f"would remove {home}" in output
    assert "would remove 1 Flower dir(s), 0 project event(s), 1 supervisor heartbeat(s)" in output
    assert home.is_dir()
    assert SupervisorHeartbeat.objects.count() == 1


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5", "３", "99999"])
def test_prune_refuses_a_bad_age_naming_the_option_and_changes_nothing(homes, value):
    session = NodeSessionFactory(status="stopped", ended_at=LONG_AGO)
    home = _home(homes, f"supernode-{session.pk}", touched=LONG_AGO.timestamp())

    with pytest.raises(CommandError, match="--older-than-days"):
        _prune("--older-than-days", value)

    assert home.is_dir()


def test_prune_removes_idle_app_copies_from_live_supernode_homes_only_while_no_run_is_live(homes):
    old = LONG_AGO.timestamp()
    supernode = NodeSessionFactory(status="running")
    home = _home(homes, f"supernode-{supernode.pk}", touched=old)
    stale = home / "apps" / "fedml.fedml-flower-app.1.0.0.ec3ce76f"
    fresh = home / "apps" / "fedml.fedml-flower-app.1.0.0.0123abcd"
    fresh.mkdir()
    live_run = FederatedRunFactory(status="running")

    assert "0 Flower dir(s)" in _prune("--older-than-days", "30")  # a run is live: its copy may be in use
    assert stale.is_dir()

    live_run.status = "completed"
    live_run.save()
    output = _prune("--older-than-days", "30")

    assert f"removed {stale}" in output
    assert not stale.exists()
    assert fresh.is_dir() and (home / "config.toml").is_file()
