"""SuperNode key enrollments with Flower's SuperNode authentication."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, InvalidInput
from orchestration import flower
from orchestration.models import (
    ENROLLMENT_LIVE_STATUSES,
    EnrollmentStatus,
    Node,
    NodeEnrollment,
    NodeRole,
)
from orchestration.services.common import invalid_input, supervisor_require_alive
from orchestration.services.events import enrollment_event_emit
from orchestration.services.transitions import enrollment_transition


@transaction.atomic
def node_enrollment_request(*, node: Node, public_key: str) -> NodeEnrollment:
    """Ask the supervisor to register a participant node's SuperNode key with the SuperLink."""
    if node.role != NodeRole.PARTICIPANT:
        raise InvalidInput("only participant nodes run SuperNodes", field="node_id")
    try:
        key = flower.validate_supernode_public_key(public_key)
    except flower.FlowerArgError as exc:
        raise invalid_input(exc) from None
    supervisor_require_alive()
    live = NodeEnrollment.objects.filter(node=node, status__in=ENROLLMENT_LIVE_STATUSES).first()
    if live is not None:
        raise Conflict(f"node {node.pk} is already enrolled ({live.status}); revoke it first", field="node_id")
    try:
        with transaction.atomic():
            enrollment = NodeEnrollment.objects.create(node=node, public_key=key)
    except IntegrityError:
        raise Conflict(f"node {node.pk} is already enrolled", field="node_id") from None
    enrollment_event_emit(enrollment_id=enrollment.pk)
    return enrollment


@transaction.atomic
def node_enrollment_revoke(*, node: Node) -> NodeEnrollment:
    """Unregister the node's key: its SuperNodes can no longer join."""
    enrollment = (
        NodeEnrollment.objects.select_for_update().filter(node=node, status__in=ENROLLMENT_LIVE_STATUSES).first()
    )
    if enrollment is None:
        raise Conflict(f"node {node.pk} is not enrolled", field="node_id")
    if enrollment.status == EnrollmentStatus.REQUESTED and enrollment.supervisor_id is None:
        enrollment_transition(
            enrollment_id=enrollment.pk, name="withdraw", revoked_at=timezone.now(), detail="withdrawn"
        )
    elif enrollment.status == EnrollmentStatus.REGISTERED:
        supervisor_require_alive()
        enrollment_transition(enrollment_id=enrollment.pk, name="request_revoke")
    return NodeEnrollment.objects.get(pk=enrollment.pk)


def enrollment_claim(*, enrollment_id: Any, supervisor_id: Any) -> bool:
    """The supervisor takes one pending registration or revocation (a conditional update)."""
    return bool(
        NodeEnrollment.objects.pending()
        .filter(pk=enrollment_id, supervisor_id__isnull=True)
        .update(supervisor_id=supervisor_id)
    )


def enrollment_mark_registered(*, enrollment_id: Any, flower_node_id: str) -> bool:
    return enrollment_transition(
        enrollment_id=enrollment_id,
        name="register",
        flower_node_id=flower_node_id,
        registered_at=timezone.now(),
        supervisor_id=None,
        detail="",
    )


def enrollment_mark_revoked(*, enrollment_id: Any) -> bool:
    return enrollment_transition(
        enrollment_id=enrollment_id, name="revoke", revoked_at=timezone.now(), supervisor_id=None
    )


@transaction.atomic
def enrollment_mark_failed(*, enrollment_id: Any, detail: str, keep_status: bool) -> bool:
    """Registration failed (`keep_status=False`: the row ends failed) or the work goes back to
    the queue with the reason (`keep_status=True`: a revocation, or FedML's own failure, is retried)."""
    if not keep_status:
        return enrollment_transition(enrollment_id=enrollment_id, name="fail", detail=detail[:5000], supervisor_id=None)
    released = NodeEnrollment.objects.filter(pk=enrollment_id).update(detail=detail[:5000], supervisor_id=None)
    if released:
        enrollment_event_emit(enrollment_id=enrollment_id)
    return bool(released)


def enrollment_release_dead(*, alive_supervisor_ids: set[Any]) -> int:
    """Pending work claimed by a supervisor that died goes back to the queue."""
    return (
        NodeEnrollment.objects.filter(supervisor_id__isnull=False)
        .exclude(supervisor_id__in=alive_supervisor_ids)
        .update(supervisor_id=None)
    )
