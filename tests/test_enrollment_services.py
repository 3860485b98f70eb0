"""SuperNode key enrollments through the services: requests, revocations and the supervisor's side."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import Conflict, InvalidInput, SupervisorUnavailable
from orchestration import services
from orchestration.models import NodeEnrollment, ProjectEvent
from orchestration.states import EnrollmentStatus
from tests.factories import NodeEnrollmentFactory, NodeFactory, SupervisorHeartbeatFactory

pytestmark = pytest.mark.django_db


def _public_key(curve: ec.EllipticCurve | None = None) -> str:
    key = ec.generate_private_key(curve or ec.SECP384R1())
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture
def alive() -> None:
    SupervisorHeartbeatFactory()


def test_a_request_records_the_key_and_announces_it(alive):
    node = NodeFactory()
    key = _public_key()

    enrollment = services.node_enrollment_request(node=node, public_key=key + "\n")

    assert enrollment.status == EnrollmentStatus.REQUESTED and enrollment.public_key == key
    event = ProjectEvent.objects.get(project=node.project, type="node.enrollment")
    assert event.payload["enrollment_id"] == str(enrollment.pk) and event.payload["status"] == "requested"


def test_a_request_for_a_coordinator_node_is_refused_naming_node_id(alive):
    with pytest.raises(InvalidInput) as refused:
        services.node_enrollment_request(node=NodeFactory(role="coordinator"), public_key=_public_key())
    assert refused.value.field == "node_id"
    assert not NodeEnrollment.objects.exists()


@pytest.mark.parametrize("bad", ["", "ssh-ed25519 AAAA", "not a key", "a\nb"])
def test_a_request_with_a_key_flower_cannot_use_is_refused_naming_public_key(alive, bad):
    with pytest.raises(InvalidInput) as refused:
        services.node_enrollment_request(node=NodeFactory(), public_key=bad)
    assert refused.value.field == "public_key"
    assert not NodeEnrollment.objects.exists()


def test_a_request_without_a_live_supervisor_answers_unavailable_and_records_nothing():
    with pytest.raises(SupervisorUnavailable):
        services.node_enrollment_request(node=NodeFactory(), public_key=_public_key())
    assert not NodeEnrollment.objects.exists()


def test_a_second_live_enrollment_of_one_node_is_a_conflict(alive):
    node = NodeFactory()
    services.node_enrollment_request(node=node, public_key=_public_key())

    with pytest.raises(Conflict):
        services.node_enrollment_request(node=node, public_key=_public_key())
    assert NodeEnrollment.objects.filter(node=node).count() == 1


def test_revoking_an_unclaimed_request_withdraws_it_at_once(alive):
    enrollment = NodeEnrollmentFactory(status=EnrollmentStatus.REQUESTED)

    revoked = services.node_enrollment_revoke(node=enrollment.node)

    assert revoked.status == EnrollmentStatus.REVOKED and revoked.detail == "withdrawn" and revoked.revoked_at


def test_revoking_a_registered_key_asks_the_supervisor(alive):
    enrollment = NodeEnrollmentFactory(status=EnrollmentStatus.REGISTERED, flower_node_id="42")

    assert services.node_enrollment_revoke(node=enrollment.node).status == EnrollmentStatus.REVOKE_REQUESTED


def test_revoking_a_node_that_is_not_enrolled_is_a_conflict_naming_node_id():
    with pytest.raises(Conflict) as refused:
        services.node_enrollment_revoke(node=NodeFactory())
    assert refused.value.field == "node_id"


def test_only_one_supervisor_claims_a_pending_enrollment():
    enrollment = NodeEnrollmentFactory(status=EnrollmentStatus.REQUESTED)
    first, second = uuid.uuid4(), uuid.uuid4()

    assert services.enrollment_claim(enrollment_id=enrollment.pk, supervisor_id=first) is True
    assert services.enrollment_claim(enrollment_id=enrollment.pk, supervisor_id=second) is False
    assert NodeEnrollment.objects.get(pk=enrollment.pk).supervisor_id == first


def test_an_ended_enrollment_is_never_claimed():
    for status in (EnrollmentStatus.REGISTERED, EnrollmentStatus.REVOKED, EnrollmentStatus.FAILED):
        enrollment = NodeEnrollmentFactory(status=status)
        assert services.enrollment_claim(enrollment_id=enrollment.pk, supervisor_id=uuid.uuid4()) is False


def test_registration_records_flowers_node_id_and_releases_the_claim():
    enrollment = NodeEnrollmentFactory(status=EnrollmentStatus.REQUESTED, supervisor_id=uuid.uuid4())

    assert services.enrollment_mark_registered(enrollment_id=enrollment.pk, flower_node_id="7361") is True

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.flower_node_id, enrollment.supervisor_id) == ("registered", "7361", None)
    assert enrollment.registered_at is not None


def test_a_failed_registration_ends_failed_with_flowers_words():
    enrollment = NodeEnrollmentFactory(status=EnrollmentStatus.REQUESTED, supervisor_id=uuid.uuid4())

    services.enrollment_mark_failed(enrollment_id=enrollment.pk, detail="Flower: key exists", keep_status=False)

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.detail, enrollment.supervisor_id) == ("failed", "Flower: key exists", None)


def test_a_failed_revocation_goes_back_to_the_queue_with_the_reason():
    enrollment = NodeEnrollmentFactory(status=EnrollmentStatus.REVOKE_REQUESTED, supervisor_id=uuid.uuid4())

    services.enrollment_mark_failed(enrollment_id=enrollment.pk, detail="Flower: unreachable", keep_status=True)

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.supervisor_id) == ("revoke_requested", None)
    assert enrollment.detail == "Flower: unreachable"
    assert services.enrollment_claim(enrollment_id=enrollment.pk, supervisor_id=uuid.uuid4()) is True


def test_work_claimed_by_a_dead_supervisor_is_released_and_a_live_ones_is_kept():
    live, dead = uuid.uuid4(), uuid.uuid4()
    kept = NodeEnrollmentFactory(status=EnrollmentStatus.REQUESTED, supervisor_id=live)
    released = NodeEnrollmentFactory(status=EnrollmentStatus.REVOKE_REQUESTED, supervisor_id=dead)

    assert services.enrollment_release_dead(alive_supervisor_ids={live}) == 1

    assert NodeEnrollment.objects.get(pk=kept.pk).supervisor_id == live
    assert NodeEnrollment.objects.get(pk=released.pk).supervisor_id is None
