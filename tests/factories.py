from __future__ import annotations

import uuid

import factory
from django.utils import timezone

from orchestration.models import FederatedRun, Node, NodeSession, Project, SupervisorHeartbeat


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
