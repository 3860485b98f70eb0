"""What the authorization matrix needs: two live projects, the seven identities, a snapshot of
everything a request could change (to check refusals and to put allowed writes back), and the leak
check (tests/test_authorization_matrix.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import models, transaction
from rest_framework.test import APIClient

from accounts.models import Membership
from accounts.services import api_token_create, project_create, project_join
from orchestration import services
from orchestration.models import FederatedRun, Node, NodeEnrollment, NodeSession, Project, ProjectEvent
from tests.authz_matrix_table import IDENTITIES, PARTICIPANTS, STANDING
from tests.factories import (
    FederatedRunFactory,
    NodeEnrollmentFactory,
    NodeSessionFactory,
    SupervisorHeartbeatFactory,
    UserFactory,
    participant_node_of,
    person_of,
)

# Figures and words that only one project's records hold; `leaks` looks for them in answers.
SECRETS = {
    name: {
        "label": f"label-secret-{name}",
        "config": f"config-secret-{name}",
        "metric": {"a": "0.111113", "b": "0.123457"}[name],
        "per_node": {"a": "0.555551", "b": "0.555552"}[name],
        "run_log": f"run-log-secret-{name}",
        "superlink_log": f"superlink-log-secret-{name}",
        "supernode_log": f"supernode-log-secret-{name}",
    }
    for name in ("a", "b")
}


def public_key() -> str:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def append(*, session: NodeSession | None = None, run: FederatedRun | None = None, text: str) -> None:
    line = services.LogLineIn(stream="stdout", source="test", ts=datetime.now(UTC), text=text)
    services.log_lines_append(
        session_id=session.pk if session else None, run_id=run.pk if run else None, first_seq=1, lines=[line], recent=""
    )


def live_project(name: str) -> dict[str, Any]:
    """A project as it is mid-run: a live SuperLink and SuperNode, a running run with log lines and
    round metrics, an enrolled site, a second site not enrolled and a join waiting for approval."""
    secret = SECRETS[name]
    coordinator_user, participant_user = (
        UserFactory(username=f"coordinator-{name}"),
        UserFactory(username=f"participant-{name}"),
    )
    project, coordinator = project_create(owner=person_of(coordinator_user), name=f"Project {name}", actor="t", via="t")
    site, _ = project_join(project=project, person=person_of(participant_user), actor="t", via="t")
    site2 = participant_node_of(UserFactory(username=f"second-site-{name}"), project)
    pending = participant_node_of(UserFactory(username=f"late-{name}"), project, join_status="pending")
    now = datetime.now(UTC)
    link = NodeSessionFactory(
        node=coordinator, kind="superlink", status="running", started_at=now, runtime_config={"host": "127.0.0.1"}
    )
    supernode = NodeSessionFactory(node=site, kind="supernode", status="running", started_at=now)
    run = FederatedRunFactory(
        project=project,
        status="running",
        coordinator_session=link,
        started_at=now,
        label=secret["label"],
        config={"app_config": {"learning-rate": secret["config"]}},
    )
    services.round_metric_record(
        run_id=run.pk,
        round=1,
        phase="evaluate",
        aggregated={"accuracy": float(secret["metric"])},
        per_node={"7": {"accuracy": float(secret["per_node"])}},
        num_rounds=3,
    )
    append(run=run, text=secret["run_log"])
    append(session=link, text=secret["superlink_log"])
    append(session=supernode, text=secret["supernode_log"])
    NodeEnrollmentFactory(node=site, status="registered", public_key=public_key())
    return {
        "project": project,
        "coordinator_user": coordinator_user,
        "participant_user": participant_user,
        "ids": {
            "P": str(project.pk),
            "RUN": str(run.pk),
            "LINK": str(link.pk),
            "SN": str(supernode.pk),
            "COORD": str(coordinator.pk),
            "SITE": str(site.pk),
            "SITE2": str(site2.pk),
            "PENDING": str(pending.pk),
        },
    }


def make_world() -> dict[str, Any]:
    """Projects A and B, equally live; the seven identities with an API token each (anonymous: none)."""
    SupervisorHeartbeatFactory()
    projects = {name: live_project(name) for name in ("a", "b")}
    users = {
        "no_role": UserFactory(username="no-role"),
        "participant_a": projects["a"]["participant_user"],
        "participant_b": projects["b"]["participant_user"],
        "coordinator_a": projects["a"]["coordinator_user"],
        "coordinator_b": projects["b"]["coordinator_user"],
        "staff": UserFactory(username="staff", is_staff=True),
    }
    tokens = {who: api_token_create(user=user, name="matrix", actor="t", via="t")[1] for who, user in users.items()}
    clients = {}
    for identity in IDENTITIES:
        clients[identity] = APIClient()
        if identity in tokens:  # signed in afresh on every request, as the dashboard's server does
            clients[identity].credentials(HTTP_AUTHORIZATION=f"Bearer {tokens[identity]}")
    ids = {**projects["a"]["ids"], "KEY": public_key()}
    standing_ids = {who: frozenset(projects[n]["project"].pk for n in STANDING[who]) for who in IDENTITIES}
    project_ids = frozenset(p["project"].pk for p in projects.values())
    return {
        "projects": projects,
        "ids": ids,
        "tokens": tokens,
        "clients": clients,
        "standing_ids": standing_ids,
        "project_ids": project_ids,
    }


# ----------------------------------------------------------------- snapshots
# Everything an endpoint may write, by model: the fields a request could change.
TRACKED: list[tuple[type[models.Model], tuple[str, ...], str]] = [
    (Project, ("id",), "id"),
    (Node, ("id", "join_status"), "project_id"),
    (Membership, ("id", "role"), "project_id"),
    (NodeSession, ("id", "status", "stop_requested_at", "ended_at"), "node__project_id"),
    (FederatedRun, ("id", "status", "stop_requested_at", "ended_at"), "project_id"),
    (NodeEnrollment, ("id", "status"), "node__project_id"),
    (ProjectEvent, ("id",), "project_id"),
]


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, dict[Any, tuple[Any, ...]]]  # model -> pk -> (project id, *fields)
    keys: frozenset[str]  # SuperNode key files on the site's disk

    def diff(self, before: Snapshot) -> list[str]:
        changes = [f"keys {sorted(self.keys ^ before.keys)}"] if self.keys != before.keys else []
        for model, rows in self.rows.items():
            old = before.rows[model]
            changes += [
                f"{model} {pk}: {old.get(pk)} -> {rows.get(pk)}"
                for pk in rows.keys() | old.keys()
                if rows.get(pk) != old.get(pk)
            ]
        return changes

    def projects_changed(self, before: Snapshot) -> set[Any]:
        """The projects whose rows differ (created, changed or deleted)."""
        changed = set()
        for model, rows in self.rows.items():
            old = before.rows[model]
            changed |= {
                (rows.get(pk) or old.get(pk))[0] for pk in rows.keys() | old.keys() if rows.get(pk) != old.get(pk)
            }
        return changed


def _key_files(data_dir: Path) -> frozenset[str]:
    keys = data_dir / "keys"
    return frozenset(str(p.relative_to(keys)) for p in keys.rglob("*")) if keys.is_dir() else frozenset()


def snapshot(data_dir: Path) -> Snapshot:
    rows = {}
    for model, fields, project in TRACKED:
        rows[model.__name__] = {row[1]: row for row in model.objects.values_list(project, *fields)}
    return Snapshot(rows, _key_files(data_dir))


def restore(before: Snapshot, data_dir: Path) -> None:
    """Put back what an allowed write changed, so that every cell starts from the same world."""
    with transaction.atomic():
        for model, fields, _ in reversed(TRACKED):
            old = before.rows[model.__name__]
            model.objects.exclude(pk__in=list(old)).delete()
            now = {row[1]: row for row in model.objects.values_list(TRACKED_PROJECT[model], *fields)}
            for pk, row in old.items():
                if now.get(pk) != row:
                    model.objects.filter(pk=pk).update(**dict(zip(fields[1:], row[2:], strict=True)))
    for name in _key_files(data_dir) - before.keys:
        path = data_dir / "keys" / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


TRACKED_PROJECT = {model: project for model, _, project in TRACKED}


# ----------------------------------------------------------------- leaks
def leaks(
    world: dict[str, Any], identity: str, browse: bool, path: str, data: Any, body: str, response: Any
) -> list[str]:
    """What `body` shows that `identity` may not see: another project's label, config, metrics,
    log lines, run, node and session ids (a run's id and label only where browsing shows them, an id
    only if the request did not name it); a participant's view of another node's log or per-node metrics."""
    found = []
    asked = f"{path} {data}"
    refused = response.status_code >= 400
    for name, project in world["projects"].items():
        secret = SECRETS[name]
        if name in STANDING[identity]:
            if identity in PARTICIPANTS:
                words = [secret["per_node"], secret["superlink_log"]]
                found += [f"shows its participant {w!r}" for w in words if w in body]
            continue
        words = [secret["config"], secret["metric"], secret["per_node"]]
        words += [secret["run_log"], secret["superlink_log"], secret["supernode_log"]]
        ids = [project["ids"][k] for k in ("LINK", "SN", "COORD", "SITE", "SITE2", "PENDING")]
        if refused or not browse:
            words.append(secret["label"])
            ids.append(project["ids"]["RUN"])
        found += [f"shows project {name}'s {w!r}" for w in words if w in body]
        found += [f"shows project {name}'s id {i}" for i in ids if i in body and i not in asked]
    return found
