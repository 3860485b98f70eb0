"""A run that waits for nodes says so, naming the project's nodes that are not connected, and a
ServerApp that gives up after `nodes-timeout` fails the run with that as its cause. The fake
`flwr run` stands in for the ServerApp by appending `nodes` records to the run's channel (as
flower_app/fedml_app/server_app.py does). Real processes, real rows; only Flower's are fake."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestration.flower.telemetry import channel_file
from orchestration.models import FederatedRun, LogLine, NodeSession, ProjectEvent
from orchestration.supervisor.common import telemetry_dir
from tests.factories import NodeEnrollmentFactory, NodeFactory, NodeSessionFactory
from tests.fake_launcher import FakeChildLauncher, ls_answer
from tests.supervisor_kit import (
    drive,
    request_run,
    run_ended,
    superlink_row,
)

pytestmark = pytest.mark.django_db(transaction=True)

STARTED = "Successfully started run 42"


def _superlink(port: int) -> NodeSession:
    return superlink_row(port)


def nodes(run: FederatedRun, connected: list[str], *, required: int = 2, timed_out: bool = False) -> list[str]:
    """fake_child arguments appending a `nodes` record to the run's channel, as its ServerApp would."""
    record: dict[str, Any] = {
        "v": 1,
        "kind": "nodes",
        "fedml_run_id": str(run.pk),
        "flwr_run_id": "42",
        "connected": connected,
        "required": required,
        "timed_out": timed_out,
    }
    channel = channel_file(telemetry_dir(run.coordinator_session_id), str(run.pk))
    return ["--append", str(channel), json.dumps(record)]


def _sites(run: FederatedRun) -> None:
    """site-a's SuperNode key is connected as Flower node 11; site-b's (node 22) is not; site-c
    has no key registered and a SuperNode running; site-d neither."""
    project = run.project
    project.nodes.filter(role="participant").delete()  # the default project's own sample participant
    for name, flower_id in (("site-a", "11"), ("site-b", "22")):
        node = NodeFactory(project=project, external_id=name, display_name=name)
        NodeEnrollmentFactory(node=node, status="registered", flower_node_id=flower_id)
    NodeSessionFactory(node=NodeFactory(project=project, external_id="site-c", display_name="site-c"), status="running")
    NodeFactory(project=project, external_id="site-d", display_name="site-d")


def _detail(run: FederatedRun, text: str):  # noqa: ANN202
    return lambda: FederatedRun.objects.filter(pk=run.pk, status_detail=text).first()


def test_a_running_run_that_waits_for_nodes_names_the_ones_not_connected(make_supervisor, superlink_port):
    launcher = FakeChildLauncher(
        run=lambda run: ["0", "0", "--say", STARTED, *nodes(run, ["11"]), "--hang", "--exit-on-usr1"],
        stop=lambda run: ["0", "0", "--send-usr1", str(run.pid)],
        ls=ls_answer("finished:stopped"),
    )
    sup = make_supervisor(launcher)
    run = request_run(_superlink(superlink_port))
    _sites(run)

    said = "Waiting for nodes: 1 connected, 2 required; not connected: site-b, site-d"
    waiting = drive(sup, _detail(run, said), message="the run's detail to say what it waits for")

    assert waiting.status == "running"
    assert said in _details(run)  # the dashboard and the admin hear of it as an event
    # What the run waits for comes from its channel, never from its log.
    assert not LogLine.objects.filter(run=run, text__contains="not connected").exists()


def _details(run: FederatedRun) -> list[str]:
    """The status details the run's `run.status` events carried, in order."""
    events = ProjectEvent.objects.filter(project=run.project, type="run.status").order_by("seq")
    return [e.payload["status_detail"] for e in events if e.payload["run_id"] == str(run.pk)]


def test_the_wait_and_its_end_are_events_and_the_detail_is_cleared(make_supervisor, superlink_port):
    launcher = FakeChildLauncher(
        run=lambda run: [
            *("0", "0", "--say", STARTED, *nodes(run, ["11"]), *nodes(run, ["11", "22"])),
            *("--hang", "--exit-on-usr1"),
        ],
        stop=lambda run: ["0", "0", "--send-usr1", str(run.pid)],
        ls=ls_answer("finished:stopped"),
    )
    sup = make_supervisor(launcher)
    run = request_run(_superlink(superlink_port))
    _sites(run)
    said = "Waiting for nodes: 1 connected, 2 required; not connected: site-b, site-d"

    def over() -> list[str] | None:
        details = _details(run)
        return details if said in details and details[-1] == "" else None

    details = drive(sup, over, message="the wait and its end as events")

    assert details[details.index(said) + 1 :] == [""]  # one event for the wait, one for its end
    assert FederatedRun.objects.get(pk=run.pk).status == "running"


def test_a_server_app_that_gave_up_waiting_fails_the_run_with_the_missing_nodes_as_its_cause(
    make_supervisor, superlink_port
):
    launcher = FakeChildLauncher(
        run=lambda run: ["0", "1", "--say", STARTED, *nodes(run, ["11"]), *nodes(run, ["11"], timed_out=True)],
        ls=ls_answer("finished:failed"),
    )
    sup = make_supervisor(launcher)
    run = request_run(_superlink(superlink_port))
    _sites(run)

    done = drive(sup, run_ended(run), message="the run to end")

    assert done.status == "failed"
    assert done.status_detail.startswith(
        "Gave up waiting for nodes: 1 connected, 2 required; not connected: site-b, site-d. Flower: finished:failed"
    )
