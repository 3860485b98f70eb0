"""A project's run-config defaults: set by its coordinator (command, service), used by its runs
where the start request names none, and never by another project's runs."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from core.errors import InvalidInput
from orchestration import services
from orchestration.models import FederatedRun
from tests.factories import NodeFactory, NodeSessionFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def _with_superlink(project: Any) -> None:
    node = NodeFactory(project=project, role="coordinator")
    NodeSessionFactory(node=node, kind="superlink", status="running", runtime_config={"host": "127.0.0.1", "port": 9})


def test_a_projects_defaults_apply_where_the_request_names_nothing(alive: None) -> None:
    project, other = ProjectFactory(), ProjectFactory()
    _with_superlink(project)
    _with_superlink(other)
    services.project_run_config_set(
        project=project, values={"min-nodes": "1", "num-server-rounds": "2"}, actor="t", via="t"
    )

    run = services.run_request_start(project=project, extra_args=["--run-config", "num-server-rounds=3"])
    plain = services.run_request_start(project=other)

    assert run.config["project_run_config"] == {"min-nodes": 1}  # the request's own value wins
    assert run.config["num_rounds"] == 3 and run.config["app_config"]["min-nodes"] == 1
    assert plain.config["project_run_config"] == {}
    assert plain.config["app_config"]["min-nodes"] == 2  # the app's own default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"no-such-key": "1"}, "not a key"),
        ({"current-run-id": '"x"'}, "not a key"),
        ({"min-nodes": '"two"'}, "must be a int"),
        ({"min-nodes": "two"}, "not a TOML value"),
        # Values Flower would not read back unchanged from `--run-config`, each refused naming its key.
        ({"learning-rate": "1e999"}, "learning-rate: '1e999': inf is not a finite number"),
        ({"strategy": '"fed\tavg"'}, "strategy: '\"fed\\tavg\"' holds the control character U+0009"),
        ({"strategy": '"fedprox"\nnum-server-rounds = 9'}, "strategy: '\"fedprox\"\\nnum-server-rounds = 9' holds"),
    ],
)
def test_bad_defaults_are_refused_naming_run_config_and_change_nothing(values: dict[str, str], message: str) -> None:
    project = ProjectFactory()

    with pytest.raises(InvalidInput) as refused:
        services.project_run_config_set(project=project, values=values, actor="t", via="t")

    assert refused.value.field == "run_config" and message in str(refused.value)
    project.refresh_from_db()
    assert "run_config" not in project.config


def test_the_command_sets_shows_and_clears_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    project = ProjectFactory(slug="clinic")

    call_command("project_run_config", "--project", "clinic", "min-nodes=1", 'strategy="fedprox"')
    shown = capsys.readouterr().out
    call_command("project_run_config", "--project", "clinic", "--clear")

    assert "clinic: min-nodes = 1" in shown and "clinic: strategy = 'fedprox'" in shown
    project.refresh_from_db()
    assert project.config["run_config"] == {}
    with pytest.raises(CommandError, match="--project"):
        call_command("project_run_config", "--project", "nope", "min-nodes=1")
    with pytest.raises(CommandError, match="run_config"):
        call_command("project_run_config", "--project", "clinic", "bogus=1")
    with pytest.raises(CommandError, match="values: learning-rate: '1e999': inf is not a finite number"):
        call_command("project_run_config", "--project", "clinic", "learning-rate=1e999")
    assert FederatedRun.objects.count() == 0
