"""The Django admin's projects, as on the dashboard: the index opens with the coordinator's projects,
adding a project creates its coordinator node, pending joins are decided by coordinators only, and
each project's control page shows and drives its SuperLink, runs, nodes and run-config defaults
through the services. Real database, Django test client, no mocks."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import AuditEvent, Node, Person, Project
from orchestration.models import FederatedRun, NodeSession, ProjectEvent
from tests.factories import (
    FederatedRunFactory,
    NodeFactory,
    NodeSessionFactory,
    SupervisorHeartbeatFactory,
    UserFactory,
    participant_node_of,
    person_of,
    project_coordinated_by,
)

pytestmark = pytest.mark.django_db

SUPERLINK_CONFIG = {"host": "127.0.0.1", "port": 9231, "insecure": True}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def control_url(project: Project) -> str:
    return f"/admin/accounts/project/{project.pk}/control/"


@pytest.fixture
def coordinator() -> Any:
    """A staff user without any Django model permission: what it may do comes from its projects."""
    return UserFactory(is_staff=True)


@pytest.fixture
def study(coordinator: Any) -> tuple[Project, Node]:
    return project_coordinated_by(coordinator, name="Heart Study", join_policy="approval")


@pytest.fixture
def busy(study: tuple[Project, Node]) -> dict[str, Any]:
    """The study with a running SuperLink, a live run at round 2 of 5, one node online and one join pending."""
    project, coordinator_node = study
    superlink = NodeSessionFactory(
        node=coordinator_node, kind="superlink", status="running", pid=4242, runtime_config=SUPERLINK_CONFIG
    )
    run = FederatedRunFactory(
        project=project, status="running", label="trial-7", metrics={"last_round": 2, "num_rounds": 5}
    )
    site = participant_node_of(UserFactory(), project, display_name="Hospital A")
    NodeSessionFactory(node=site, kind="supernode", status="running", pid=5151)
    NodeFactory(project=project, role="participant")  # approved, never started: offline
    pending = participant_node_of(UserFactory(), project, display_name="Clinic B", join_status="pending")
    return {"project": project, "superlink": superlink, "run": run, "site": site, "pending": pending}


# ----------------------------------------------------------------- the index
def test_the_index_opens_with_the_coordinators_projects_and_their_state(coordinator: Any, busy: dict) -> None:
    other, _ = project_coordinated_by(UserFactory(), name="Someone Elses Study")
    page = signed_in(coordinator).get("/admin/").content.decode()

    panel = page[page.index('id="fedml-projects"') : page.index("</table>", page.index('id="fedml-projects"'))]
    assert page.index('id="fedml-projects"') < page.index('class="app-accounts')  # before every app
    row = panel[panel.index(f'data-project-id="{busy["project"].pk}"') :]
    assert "Heart Study" in row and "running on 127.0.0.1:9231" in row and "running</a>, round 2 of 5" in row
    assert '<td class="fedml-online">1</td>' in row
    assert f'href="{control_url(busy["project"])}#pending-joins">1</a>' in row
    assert f"/admin/orchestration/federatedrun/?project__id__exact={busy['project'].pk}" in row
    assert str(other.pk) not in page and "Someone Elses Study" not in page


def test_a_superuser_sees_every_project_and_staff_who_coordinate_nothing_see_none(study: tuple) -> None:
    root = UserFactory(is_staff=True, is_superuser=True)
    other, _ = project_coordinated_by(UserFactory(), name="Another Study")
    page = signed_in(root).get("/admin/").content.decode()
    assert f'data-project-id="{study[0].pk}"' in page and f'data-project-id="{other.pk}"' in page

    page = signed_in(UserFactory(is_staff=True)).get("/admin/").content.decode()
    assert "You coordinate no project yet" in page and 'data-project-id="' not in page


def test_only_staff_enter_the_admin(study: tuple) -> None:
    assert Client().get("/admin/login/").status_code == 200
    response = signed_in(UserFactory()).get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert signed_in(UserFactory()).get(control_url(study[0])).status_code == 302


# ----------------------------------------------------------------- adding a project
def test_adding_a_project_creates_its_coordinator_node_owned_by_the_user(coordinator: Any) -> None:
    client = signed_in(coordinator)
    assert client.get("/admin/accounts/project/add/").status_code == 200

    response = client.post(
        "/admin/accounts/project/add/",
        {
            "name": "Lung Study",
            "description": "CT scans",
            "join_policy": "approval",
            "coordinator_display_name": "Main Hospital",
        },
    )

    project = Project.objects.get(name="Lung Study")
    assert response.status_code == 302 and response["Location"] == control_url(project)
    assert project.slug == "lung-study" and project.join_policy == "approval"
    assert project.created_by == person_of(coordinator)
    node = Node.objects.get(project=project)
    assert (node.role, node.user, node.display_name, node.join_status) == (
        "coordinator",
        person_of(coordinator),
        "Main Hospital",
        "approved",
    )
    assert node.external_id == "lung-study-coordinator"
    assert AuditEvent.objects.filter(action="project.create", via="admin", target="lung-study").exists()
    assert f'data-project-id="{project.pk}"' in client.get("/admin/").content.decode()
    assert client.get(control_url(project)).status_code == 200


def test_a_refused_creation_says_why_and_creates_nothing(coordinator: Any, settings: Any) -> None:
    client = signed_in(coordinator)
    response = client.post("/admin/accounts/project/add/", {"name": "", "join_policy": "open"})
    assert response.status_code == 200 and "This field is required" in response.content.decode()

    settings.PROJECT_CREATORS = "admin"
    Person.objects.filter(django_user=coordinator).update(role="client")
    response = client.post("/admin/accounts/project/add/", {"name": "Gated", "join_policy": "open"})
    assert response.status_code == 200 and "only admins may create projects" in response.content.decode()
    assert not Project.objects.exists() and not Node.objects.exists()


# ----------------------------------------------------------------- pending joins
def _node_action(client: Client, action: str, node: Node) -> Any:
    return client.post(
        "/admin/accounts/node/?join_status__exact=pending",
        {"action": action, "_selected_action": [str(node.pk)], "index": "0"},
        follow=True,
    )


def test_a_coordinator_lists_and_approves_pending_joins_in_the_node_admin(coordinator: Any, busy: dict) -> None:
    client = signed_in(coordinator)
    elsewhere = participant_node_of(UserFactory(), project_coordinated_by(UserFactory())[0], join_status="pending")

    page = client.get("/admin/accounts/node/?join_status__exact=pending").content.decode()
    assert busy["pending"].external_id in page and elsewhere.external_id not in page

    response = _node_action(client, "approve_joins", busy["pending"])

    assert "1 join approved" in messages_of(response)
    busy["pending"].refresh_from_db()
    assert busy["pending"].join_status == "approved"
    assert AuditEvent.objects.filter(action="project.join_decide", outcome="ok", via="admin").count() == 1


def test_a_coordinator_refuses_a_join_on_the_control_page(coordinator: Any, busy: dict) -> None:
    node = busy["pending"]
    response = signed_in(coordinator).post(
        control_url(busy["project"]), {"action": "refuse_join", "refuse_join-node": str(node.pk)}, follow=True
    )
    assert "1 join refused" in messages_of(response)
    node.refresh_from_db()
    assert node.join_status == "refused"

    # Deciding it the other way now is a conflict, said as a message: no 500, nothing changes.
    response = signed_in(coordinator).post(
        control_url(busy["project"]), {"action": "approve_join", "approve_join-node": str(node.pk)}, follow=True
    )
    assert any("already refused" in m for m in messages_of(response))
    node.refresh_from_db()
    assert node.join_status == "refused"


def test_staff_who_do_not_coordinate_the_project_cannot_decide_its_joins(busy: dict) -> None:
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=("view_node", "change_node")))
    client = signed_in(viewer)

    response = _node_action(client, "approve_joins", busy["pending"])

    assert any("only the coordinators of" in m for m in messages_of(response)), messages_of(response)
    busy["pending"].refresh_from_db()
    assert busy["pending"].join_status == "pending"
    assert AuditEvent.objects.filter(action="project.join_decide", outcome="denied", actor=viewer).exists()
    response = client.post(
        control_url(busy["project"]), {"action": "approve_join", "approve_join-node": str(busy["pending"].pk)}
    )
    assert response.status_code == 403
    busy["pending"].refresh_from_db()
    assert busy["pending"].join_status == "pending"


# ----------------------------------------------------------------- the control page
def test_the_control_page_shows_superlink_run_nodes_joins_defaults_and_runs(coordinator: Any, busy: dict) -> None:
    project = busy["project"]
    old = FederatedRunFactory(project=project, status="completed", label="trial-6", metrics={"last_round": 3})
    other_run = FederatedRunFactory(label="not-this-projects")

    page = signed_in(coordinator).get(control_url(project)).content.decode()

    superlink = page[page.index('id="superlink"') : page.index('id="live-run"')]
    assert "running" in superlink and "127.0.0.1:9231" in superlink and "4242" in superlink
    assert 'name="action" value="stop_superlink"' in superlink and "csrfmiddlewaretoken" in superlink
    live = page[page.index('id="live-run"') : page.index('id="pending-joins"')]
    assert "trial-7" in live and "round 2 of 5" in live and 'value="stop_run"' in live
    joins = page[page.index('id="pending-joins"') : page.index('id="nodes"')]
    assert "Clinic B" in joins and f'value="{busy["pending"].pk}"' in joins
    nodes = page[page.index('id="nodes"') : page.index('id="run-config"')]
    assert "1 online" in nodes and "Hospital A" in nodes and "supernode running" in nodes and "(pid 5151)" in nodes
    assert "Clinic B" not in nodes and "offline" in nodes
    runs = page[page.index('id="runs"') :]
    for run in (busy["run"], old):
        assert f"/admin/orchestration/federatedrun/{run.pk}/change/" in runs
    assert "round 3" in runs and "not-this-projects" not in page and str(other_run.pk) not in page


def test_without_a_superlink_the_page_offers_to_start_one_and_no_run(coordinator: Any, study: tuple) -> None:
    page = signed_in(coordinator).get(control_url(study[0])).content.decode()
    assert 'value="start_superlink"' in page and 'name="start_superlink-listen_address"' in page
    assert 'value="start_run"' not in page and "Start the SuperLink first" in page


def test_starting_the_superlink_records_the_intent_and_says_no_supervisor_took_it(
    coordinator: Any, study: tuple, settings: Any
) -> None:
    settings.START_WAIT_SECONDS = 0.2
    SupervisorHeartbeatFactory()
    project = study[0]

    response = signed_in(coordinator).post(
        control_url(project), {"action": "start_superlink", "start_superlink-insecure": "on"}, follow=True
    )

    assert response.status_code == 200
    assert any("No supervisor picked up the request within 0.2s" in m for m in messages_of(response))
    # The request reached the database (its event), then was withdrawn when nobody claimed it.
    events = list(ProjectEvent.objects.filter(project=project).values_list("type", flat=True))
    assert events == ["session.status", "session.deleted"]
    assert not NodeSession.objects.exists()
    assert AuditEvent.objects.filter(action="superlink.start", outcome="error", target=project.slug).exists()


def test_a_bad_superlink_start_names_the_field_and_changes_nothing(coordinator: Any, study: tuple) -> None:
    SupervisorHeartbeatFactory()
    response = signed_in(coordinator).post(
        control_url(study[0]),
        {"action": "start_superlink", "start_superlink-insecure": "on", "start_superlink-extra_args": "--database /x"},
    )
    assert response.status_code == 200
    assert any(m.startswith("Start SuperLink: extra_args") for m in messages_of(response)), messages_of(response)
    assert 'value="--database /x"' in response.content.decode()  # what was typed stays in the form
    assert not NodeSession.objects.exists() and not ProjectEvent.objects.exists()


def test_stopping_the_superlink_and_the_run_records_the_stop_requests(coordinator: Any, busy: dict) -> None:
    client = signed_in(coordinator)

    response = client.post(control_url(busy["project"]), {"action": "stop_run"}, follow=True)
    assert f"Stop requested for run {busy['run'].pk}" in messages_of(response)
    busy["run"].refresh_from_db()
    assert busy["run"].stop_requested_at is not None

    response = client.post(control_url(busy["project"]), {"action": "stop_superlink"}, follow=True)
    assert f"Stop requested for SuperLink session {busy['superlink'].pk}" in messages_of(response)
    busy["superlink"].refresh_from_db()
    assert busy["superlink"].stop_requested_at is not None
    assert set(AuditEvent.objects.filter(via="admin", outcome="ok").values_list("action", flat=True)) >= {
        "run.stop",
        "superlink.stop",
    }


def test_starting_a_run_records_it_against_the_projects_superlink(
    coordinator: Any, study: tuple, settings: Any
) -> None:
    settings.START_WAIT_SECONDS = 0.2
    SupervisorHeartbeatFactory()
    project, node = study
    NodeSessionFactory(node=node, kind="superlink", status="running", runtime_config=SUPERLINK_CONFIG)
    client = signed_in(coordinator)

    response = client.post(
        control_url(project),
        {"action": "start_run", "start_run-federation_name": "bad name!"},
        follow=True,
    )
    assert any("federation_name" in m for m in messages_of(response)) and not FederatedRun.objects.exists()

    response = client.post(
        control_url(project),
        {
            "action": "start_run",
            "start_run-federation_name": "production",
            "start_run-extra_args": '--run-config "local-epochs=1"',
        },
        follow=True,
    )
    assert any("No supervisor picked up the run within 0.2s" in m for m in messages_of(response))
    assert list(ProjectEvent.objects.filter(project=project).values_list("type", flat=True)) == [
        "run.status",
        "run.deleted",
    ]

    response = client.post(
        control_url(project),
        {"action": "start_run", "start_run-federation_name": "production", "start_run-extra_args": "--run-config x=1"},
        follow=True,
    )
    assert any("'x' is not a key" in m for m in messages_of(response)), messages_of(response)
    assert not FederatedRun.objects.exists()


def test_run_config_defaults_are_saved_validated_and_cleared(coordinator: Any, study: tuple) -> None:
    project = study[0]
    client = signed_in(coordinator)

    response = client.post(
        control_url(project),
        {"action": "run_config", "run_config-values": 'min-nodes=1 strategy="fedprox"'},
        follow=True,
    )
    assert 'Run-config defaults saved: min-nodes=1 strategy="fedprox"' in messages_of(response)
    project.refresh_from_db()
    assert project.config["run_config"] == {"min-nodes": 1, "strategy": "fedprox"}
    assert 'value="min-nodes=1 strategy=&quot;fedprox&quot;"' in response.content.decode()  # shown for editing
    assert AuditEvent.objects.filter(action="project.run_config", via="admin").exists()

    for values, named in (
        ("no-such-key=1", "'no-such-key' is not a key"),
        ('min-nodes="two"', "min-nodes must be a int"),
        ("min-nodes", "run_config"),
        ("learning-rate=1e999", "learning-rate: '1e999': inf is not a finite number"),  # Flower reads no inf
        ('strategy="fed\tavg"', "strategy: '\"fed\\tavg\"' holds the control character U+0009"),
    ):
        response = client.post(control_url(project), {"action": "run_config", "run_config-values": values})
        assert response.status_code == 200
        assert any(m.startswith("Run-config defaults: ") and named in m for m in messages_of(response)), (
            values,
            messages_of(response),
        )
        project.refresh_from_db()
        assert project.config["run_config"] == {"min-nodes": 1, "strategy": "fedprox"}

    response = client.post(control_url(project), {"action": "run_config", "run_config-values": ""}, follow=True)
    assert any("cleared" in m for m in messages_of(response))
    project.refresh_from_db()
    assert project.config["run_config"] == {}


def test_strangers_get_403_and_change_nothing(busy: dict) -> None:
    project = busy["project"]
    stranger = UserFactory(is_staff=True)
    participant = busy["site"].user.django_user
    participant.is_staff = True
    participant.save()

    for user in (stranger, participant):
        client = signed_in(user)
        assert client.get(control_url(project)).status_code == 403
        assert client.post(control_url(project), {"action": "stop_run"}).status_code == 403
        assert client.post(control_url(project), {"action": "stop_superlink"}).status_code == 403
    busy["run"].refresh_from_db()
    busy["superlink"].refresh_from_db()
    assert busy["run"].stop_requested_at is None and busy["superlink"].stop_requested_at is None
    assert AuditEvent.objects.filter(action="project.control", outcome="denied").count() == 4
    root = UserFactory(is_staff=True, is_superuser=True)
    assert signed_in(root).get(control_url(project)).status_code == 200
    assert (
        signed_in(root).get("/admin/accounts/project/00000000-0000-0000-0000-000000000000/control/").status_code == 404
    )


def test_a_coordinator_sees_its_own_projects_runs_and_sessions_only(coordinator: Any, busy: dict) -> None:
    other_run = FederatedRunFactory(status="completed")
    client = signed_in(coordinator)

    page = client.get(f"/admin/orchestration/federatedrun/?project__id__exact={busy['project'].pk}").content.decode()
    assert str(busy["run"].pk) in page and "round 2 of 5" in page
    page = client.get("/admin/orchestration/federatedrun/").content.decode()
    assert str(other_run.pk) not in page and other_run.project.slug not in page
    assert client.get(f"/admin/orchestration/federatedrun/{busy['run'].pk}/change/").status_code == 200
    assert client.get(f"/admin/orchestration/federatedrun/{other_run.pk}/change/").status_code == 302  # "not found"
    assert client.get(f"/admin/orchestration/nodesession/{busy['superlink'].pk}/change/").status_code == 200
    # Seeing is not controlling: the default project's start/stop controls still need Django's permission.
    assert client.post("/admin/orchestration/nodesession/start-superlink/", {"insecure": "on"}).status_code == 403


def test_forms_need_their_csrf_token(coordinator: Any, busy: dict) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(coordinator)
    assert client.post(control_url(busy["project"]), {"action": "stop_run"}).status_code == 403
    busy["run"].refresh_from_db()
    assert busy["run"].stop_requested_at is None


def test_the_index_costs_the_same_queries_however_many_projects(coordinator: Any, busy: dict) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = signed_in(coordinator)
    client.get("/admin/")
    with CaptureQueriesContext(connection) as one:
        client.get("/admin/")
    for name in ("B", "C", "D"):
        project, node = project_coordinated_by(coordinator, name=name)
        NodeSessionFactory(node=node, kind="superlink", status="running", runtime_config=SUPERLINK_CONFIG)
        FederatedRunFactory(project=project, status="running")
    with CaptureQueriesContext(connection) as four:
        page = client.get("/admin/").content.decode()
    assert page.count('class="fedml-project"') == 4
    assert len(four) == len(one), [q["sql"] for q in four.captured_queries]
