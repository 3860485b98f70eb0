"""SuperNode key enrollments with Flower's SuperNode authentication."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestration import flower
from orchestration.errors import Conflict, InvalidInput
from orchestration.models import (
    ENROLLMENT_LIVE_STATUSES,
    EnrollmentStatus,
    Node,
    NodeEnrollment,
    NodeRole,
)
from orchestration.services.common import invalid_input, supervisor_require_alive
from orchestration.services.events import event_emit


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
    event_emit(project_id=node.project_id, type="node.enrollment", payload=enrollment_payload(enrollment))
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
        _enrollment_set(enrollment.pk, status=EnrollmentStatus.REVOKED, revoked_at=timezone.now(), detail="withdrawn")
    elif enrollment.status == EnrollmentStatus.REGISTERED:
        supervisor_require_alive()
        _enrollment_set(enrollment.pk, status=EnrollmentStatus.REVOKE_REQUESTED)
    return NodeEnrollment.objects.get(pk=enrollment.pk)


def enrollment_payload(enrollment: NodeEnrollment) -> dict[str, Any]:
    return {
        "enrollment_id": str(enrollment.pk),
        "node_id": str(enrollment.node_id),
        "status": enrollment.status,
        "flower_node_id": enrollment.flower_node_id or None,
        "detail": enrollment.detail[:500],
    }


def _enrollment_set(enrollment_id: Any, **changes: Any) -> None:
    NodeEnrollment.objects.filter(pk=enrollment_id).update(**changes)
    enrollment = NodeEnrollment.objects.select_related("node").get(pk=enrollment_id)
    event_emit(project_id=enrollment.node.project_id, type="node.enrollment", payload=enrollment_payload(enrollment))


def enrollment_claim(*, enrollment_id: Any, supervisor_id: Any) -> bool:
    """The supervisor takes one pending registration or revocation (a conditional update)."""
    return bool(
        NodeEnrollment.objects.filter(
            pk=enrollment_id,
            supervisor_id__isnull=True,
            status__in=(EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED),
        ).update(supervisor_id=supervisor_id)
    )


@transaction.atomic
def enrollment_mark_registered(*, enrollment_id: Any, flower_node_id: str) -> None:
    _enrollment_set(
        enrollment_id,
        status=EnrollmentStatus.REGISTERED,
        flower_node_id=flower_node_id,
        registered_at=timezone.now(),
        supervisor_id=None,
        detail="",
    )


@transaction.atomic
def enrollment_mark_revoked(*, enrollment_id: Any) -> None:
    _enrollment_set(enrollment_id, status=EnrollmentStatus.REVOKED, revoked_at=timezone.now(), supervisor_id=None)


@transaction.atomic
def enrollment_mark_failed(*, enrollment_id: Any, detail: str, keep_status: bool) -> None:
    """Registration failed (`keep_status=False`: the row ends failed) or revocation must be retried."""
    changes: dict[str, Any] = {"detail": detail[:5000], "supervisor_id": None}
    if not keep_status:
        changes["status"] = EnrollmentStatus.FAILED
    _enrollment_set(enrollment_id, **changes)


def enrollment_release_dead(*, alive_supervisor_ids: set[Any]) -> int:
    """Pending work claimed by a supervisor that died goes back to the queue."""
    return (
        NodeEnrollment.objects.filter(supervisor_id__isnull=False)
        .exclude(supervisor_id__in=alive_supervisor_ids)
        .update(supervisor_id=None)
    )
