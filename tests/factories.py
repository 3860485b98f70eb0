from __future__ import annotations

import uuid
from pathlib import Path

import factory
from django.utils import timezone

from accounts.models import Person
from orchestration.models import FederatedRun, Node, NodeEnrollment, NodeSession, Project, SupervisorHeartbeat


class UserFactory(factory.django.DjangoModelFactory):
    """A Django user; its person row (table `users`) follows automatically (accounts.signals)."""

    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = "pw-123456-xyz"

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> object:
        return model_class.objects.create_user(*args, **kwargs)


def person_of(user: object) -> Person:
    return Person.objects.get(django_user=user)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.Sequence(lambda n: f"Project {n}")


class NodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Node

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"node-{n}")
    role = "participant"
    display_name = factory.Sequence(lambda n: f"Node {n}")


class NodeSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NodeSession

    node = factory.SubFactory(NodeFactory)
    kind = "supernode"
    status = "requested"


class FederatedRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FederatedRun

    project = factory.SubFactory(ProjectFactory)
    status = "requested"
    federation_name = "production"


class SupervisorHeartbeatFactory(factory.django.DjangoModelFactory):
    """A heartbeat row: makes /health and the start services believe a supervisor is alive."""

    class Meta:
        model = SupervisorHeartbeat

    id = factory.LazyFunction(uuid.uuid4)
    hostname = "test-host"
    pid = 1
    started_at = factory.LazyFunction(timezone.now)
    beat_at = factory.LazyFunction(timezone.now)


def staff_api_client() -> object:
    """A DRF test client signed in as staff (who may do everything the API offers)."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    user = get_user_model().objects.create_user(
        username=f"staff-{uuid.uuid4().hex[:8]}", password="pw-123456-xyz", is_staff=True
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


class NodeEnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NodeEnrollment

    node = factory.SubFactory(NodeFactory)
    public_key = "ecdsa-sha2-nistp384 AAAA"
    status = "requested"


def fake_server_certificates(root: Path, name: str = "server") -> Path:
    """A directory holding the three files a TLS SuperLink needs (contents irrelevant to argv building)."""
    directory = root / name
    directory.mkdir(parents=True)
    for file in ("ca.crt", "server.pem", "server.key"):
        (directory / file).write_text(f"-- {file} --\n")
    return directory


# ----------------------------------------------------------------- the dashboard's data API (portal)
def bearer_client(user: object | None = None) -> object:
    """A DRF client that signs each request in afresh with an API token, as the dashboard's server
    does (nothing cached on a user object between requests); anonymous without a user."""
    from rest_framework.test import APIClient

    from accounts.services import api_token_create

    client = APIClient()
    if user is not None:
        secret = api_token_create(user=user, name="portal-test", actor="test", via="test")[1]  # type: ignore[arg-type]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def project_coordinated_by(user: object, name: str = "Study", **kwargs: object) -> tuple[Project, Node]:
    """A project created through the service: `user` owns it and its coordinator node."""
    from accounts.services.projects import project_create

    return project_create(owner=person_of(user), name=name, actor="test", via="test", **kwargs)  # type: ignore[arg-type]


def participant_node_of(user: object, project: Project, **kwargs: object) -> Node:
    """`user`'s participant node in `project` (approved unless join_status says otherwise)."""
    return NodeFactory(project=project, user=person_of(user), role="participant", **kwargs)
