"""Acceptance: two projects in one deployment, each with its own coordinator, participant,
SuperLink and run, live at the same time on real Flower, and neither sees the other's records,
logs, sockets or events."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from accounts.services import api_token_create, project_create, project_join
from fedml_site.asgi import application
from orchestration import services
from orchestration.models import FederatedRun, LogLine, NodeSession, ProjectEvent, RoundMetric
from orchestration.runtime_config import superlink_config
from tests.event_loops import run_bounded
from tests.factories import UserFactory, person_of
from tests.stack import Stack, wait_until
from tests.ws import collect_lines

pytestmark = [pytest.mark.federation, pytest.mark.django_db(transaction=True)]


def _as(stack: Stack, user: Any) -> Stack:
    token = api_token_create(user=user, name="test", actor="test", via="test")[1]
    return dataclasses.replace(stack, token=token)


def _project(stack: Stack, name: str) -> dict[str, Any]:
    owner, member = UserFactory(username=f"{name}-coordinator"), UserFactory(username=f"{name}-site")
    project, coordinator = project_create(owner=person_of(owner), name=f"Clinic {name}", actor="t", via="t")
    site, _ = project_join(project=project, person=person_of(member), actor="t", via="t")
    services.project_run_config_set(
        project=project, values={"min-nodes": "1", "num-server-rounds": "3"}, actor="t", via="t"
    )
    return {
        "project": project,
        "coordinator": coordinator,
        "site": site,
        "owner": _as(stack, owner),
        "member": _as(stack, member),
        "owner_user": owner,
    }


async def _socket_close_code(path: str, token: str) -> int | None:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=["fedml", f"bearer.{token}"])
    connected, code = await communicator.connect(timeout=10)
    if connected:
        message = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return message.get("code") if message["type"] == "websocket.close" else None
    return code


async def _socket_lines(path: str, token: str, until_seq: int) -> list[dict[str, Any]]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=["fedml", f"bearer.{token}"])
    connected, _ = await communicator.connect(timeout=10)
    assert connected, path
    try:
        lines, _ = await collect_lines(communicator, until_seq=until_seq)
    finally:
        await communicator.disconnect()
    return lines


def _assert_no_telemetry(texts: list[str], who: str) -> None:
    """What a participant reads of the run's log holds no per-node figures (no telemetry at all)."""
    assert texts, who
    leaked = [t for t in texts if "FEDML_METRICS" in t or '"per_node"' in t or "FEDML_ARTIFACT {" in t]
    assert leaked == [], who


def test_two_projects_run_at_once_on_their_own_superlinks_and_see_nothing_of_each_other(stack: Stack) -> None:
    a, b = _project(stack, "a"), _project(stack, "b")

    # Each coordinator starts its project's SuperLink: A names its project, B lets FedML find it.
    status, link_a = a["owner"].post("/api/coordinator/superlink/start", {"project_id": str(a["project"].pk)})
    assert status == 201, link_a
    status, link_b = b["owner"].post("/api/coordinator/superlink/start", {})
    assert status == 201, link_b
    assert (link_a["project_id"], link_b["project_id"]) == (str(a["project"].pk), str(b["project"].pk))
    config_a = superlink_config(NodeSession.objects.get(pk=link_a["session_id"]))
    config_b = superlink_config(NodeSession.objects.get(pk=link_b["session_id"]))
    assert config_a.port != config_b.port and config_a.database != config_b.database
    assert link_a["log_path"] != link_b["log_path"]

    # Each participant's SuperNode dials its own project's SuperLink (no address given).
    sites = {}
    for world in (a, b):
        status, body = world["member"].post(
            "/api/participant/supernode/start", {"partition_id": 0, "num_partitions": 1}
        )
        assert status == 201, body
        sites[world["project"].pk] = body["session_id"]
        session = NodeSession.objects.get(pk=body["session_id"])
        assert session.node_id == world["site"].pk
    assert (
        NodeSession.objects.get(pk=sites[a["project"].pk])
        .runtime_config["superlink_address"]
        .endswith(f":{config_a.port}")
    )
    assert (
        NodeSession.objects.get(pk=sites[b["project"].pk])
        .runtime_config["superlink_address"]
        .endswith(f":{config_b.port}")
    )

    # Both runs, back to back: live at the same time.
    runs = {}
    for world in (a, b):
        status, body = world["owner"].post("/api/coordinator/runs/start", {"project_id": str(world["project"].pk)})
        assert status in (201, 202), body
        runs[world["project"].pk] = body["run_id"]
    wait_until(
        lambda: FederatedRun.objects.filter(pk__in=runs.values(), ended_at__isnull=True).count() == 0,
        timeout=420,
        interval=1,
        message="both runs ended",
    )
    run_a, run_b = (FederatedRun.objects.get(pk=runs[w["project"].pk]) for w in (a, b))
    assert (run_a.status, run_b.status) == ("completed", "completed"), (run_a.status_detail, run_b.status_detail)
    assert run_a.started_at < run_b.ended_at and run_b.started_at < run_a.ended_at, "the runs overlapped"
    assert run_a.log_path != run_b.log_path

    # Each run's rounds are its own (its ServerApp got its own FedML run id).
    for run in (run_a, run_b):
        rounds = sorted(RoundMetric.objects.filter(run=run, phase="evaluate").values_list("round", flat=True))
        assert rounds == [1, 2, 3]
        assert run.metrics["num_rounds"] == 3
        texts = "\n".join(LogLine.objects.filter(run=run).values_list("text", flat=True))
        other = run_b if run is run_a else run_a
        assert str(other.pk) not in texts and other.flower_run_id not in texts

    # A participant reads its run's whole log, over REST and the websocket: no site's figures in it.
    for world, run in ((a, run_a), (b, run_b)):
        member = world["member"]
        status, body = member.get(f"/api/coordinator/runs/{run.pk}/logs?limit=5000")
        assert status == 200, body
        _assert_no_telemetry([line["text"] for line in body["lines"]], "REST")
        last_seq = LogLine.objects.filter(run=run).order_by("-seq").values_list("seq", flat=True).first()
        assert last_seq == body["lines"][-1]["seq"]
        lines = run_bounded(_socket_lines(f"/ws/runs/{run.pk}/logs/", member.token, last_seq))
        _assert_no_telemetry([line["text"] for line in lines], "websocket")
        status, detail = member.get(f"/api/coordinator/runs/{run.pk}")
        assert status == 200 and detail["metrics"]["evaluate"], detail  # aggregated figures: shared
        assert detail["rounds"] and all(r["per_node"] == {} for r in detail["rounds"])

    # Events: each project's feed names only its own runs and sessions.
    for world, own_run, other_run in ((a, run_a, run_b), (b, run_b, run_a)):
        payloads = [
            str(p) for p in ProjectEvent.objects.filter(project=world["project"]).values_list("payload", flat=True)
        ]
        assert any(str(own_run.pk) in p for p in payloads)
        assert not any(str(other_run.pk) in p for p in payloads)

    # Records across projects: not found, over REST and websockets, for coordinator and participant.
    for viewer, foreign_run, foreign_link in ((a, run_b, link_b), (b, run_a, link_a)):
        for client in (viewer["owner"], viewer["member"]):
            assert client.get(f"/api/coordinator/runs/{foreign_run.pk}")[0] == 404
            assert client.get(f"/api/coordinator/runs/{foreign_run.pk}/logs")[0] == 404
            assert client.get(f"/api/coordinator/sessions/{foreign_link['session_id']}/logs")[0] == 404
            for path in (f"/ws/runs/{foreign_run.pk}/logs/", f"/ws/sessions/{foreign_link['session_id']}/logs/"):
                assert run_bounded(_socket_close_code(path, client.token)) in (4403, 4404), path
            foreign_project = foreign_run.project_id
            assert run_bounded(_socket_close_code(f"/ws/projects/{foreign_project}/events/", client.token)) in (
                4403,
                4404,
            )
        status, body = viewer["owner"].get(f"/api/coordinator/health?project_id={foreign_run.project_id}")
        assert status == 404 and body["field"] == "project_id"
        status, body = viewer["owner"].post("/api/coordinator/runs/stop", {"project_id": str(foreign_run.project_id)})
        assert status == 404
    # And each sees its own.
    assert a["owner"].get(f"/api/coordinator/runs/{run_a.pk}")[0] == 200
    assert b["member"].get(f"/api/coordinator/runs/{run_b.pk}/logs")[0] == 200
