"""The one place status rules live: each record kind's statuses and its legal transitions.

A transition is named (what happened), lists the statuses it may start from and says where it
ends. `orchestration.services.transitions.transition_apply` carries one out as a conditional
update (`... WHERE status IN sources`), so of two racing writers exactly one wins, and emits
the row's status event in the same transaction. Nothing outside this module and the models
spells a status as a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db import models


class SessionKind(models.TextChoices):
    SUPERLINK = "superlink"
    SUPERNODE = "supernode"


class SessionStatus(models.TextChoices):
    REQUESTED = "requested"  # intent recorded, waiting for a supervisor
    STARTING = "starting"  # claimed by a supervisor, being spawned
    RUNNING = "running"
    STOPPING = "stopping"  # SIGTERM sent to the process group
    STOPPED = "stopped"  # ended because someone asked
    EXITED = "exited"  # ended by itself with code 0
    FAILED = "failed"  # ended by itself with an error, or could not start
    LOST = "lost"  # its supervisor died; see status_detail


class RunStatus(models.TextChoices):
    REQUESTED = "requested"
    STARTING = "starting"  # claimed; `flwr run` spawned (or waiting for the SuperLink), Flower's run id not yet known
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


class EnrollmentStatus(models.TextChoices):
    REQUESTED = "requested"  # waiting for the supervisor to register the key with the SuperLink
    REGISTERED = "registered"
    REVOKE_REQUESTED = "revoke_requested"
    REVOKED = "revoked"
    FAILED = "failed"


SESSION_LIVE_STATUSES = (SessionStatus.REQUESTED, SessionStatus.STARTING, SessionStatus.RUNNING, SessionStatus.STOPPING)
# Live and owned by a supervisor: what a dead supervisor leaves behind for reconcile.
SESSION_CLAIMED_STATUSES = (SessionStatus.STARTING, SessionStatus.RUNNING, SessionStatus.STOPPING)
SESSION_ENDED_BY_ITSELF = (SessionStatus.FAILED, SessionStatus.LOST, SessionStatus.EXITED)

RUN_LIVE_STATUSES = (RunStatus.REQUESTED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING)
RUN_CLAIMED_STATUSES = (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING)
RUN_ENDED_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED)

ENROLLMENT_LIVE_STATUSES = (EnrollmentStatus.REQUESTED, EnrollmentStatus.REGISTERED, EnrollmentStatus.REVOKE_REQUESTED)
# Work for the supervisor: a key to register with, or to remove from, the SuperLink.
ENROLLMENT_PENDING_STATUSES = (EnrollmentStatus.REQUESTED, EnrollmentStatus.REVOKE_REQUESTED)

S = TypeVar("S", bound=str)


@dataclass(frozen=True)
class Transition(Generic[S]):
    sources: frozenset[S]
    target: S


def _t(sources: tuple[S, ...] | S, target: S) -> Transition[S]:
    return Transition(frozenset(sources if isinstance(sources, tuple) else (sources,)), target)


_S = SessionStatus
SESSION_TRANSITIONS: dict[str, Transition[SessionStatus]] = {
    "claim": _t(_S.REQUESTED, _S.STARTING),  # exactly one supervisor wins a request
    "withdraw": _t(_S.REQUESTED, _S.STOPPED),  # stopped before any supervisor claimed it
    "spawned": _t(_S.STARTING, _S.RUNNING),
    # Exited by itself; its restart policy starts it again after a back-off (nobody asked it to stop).
    "restart": _t((_S.STARTING, _S.RUNNING), _S.STARTING),
    "stop": _t((_S.STARTING, _S.RUNNING), _S.STOPPING),
    "end_stopped": _t(SESSION_LIVE_STATUSES, _S.STOPPED),  # ended because someone asked
    "end_exited": _t(SESSION_LIVE_STATUSES, _S.EXITED),  # code 0 by itself
    "end_failed": _t(SESSION_LIVE_STATUSES, _S.FAILED),  # an error, or it could not start
    "lose": _t(SESSION_LIVE_STATUSES, _S.LOST),  # its supervisor died
}

_R = RunStatus
# How a running run's status detail starts while it waits for nodes (cleared when it no longer does).
WAITING_FOR_NODES = "Waiting for nodes"

RUN_TRANSITIONS: dict[str, Transition[RunStatus]] = {
    "claim": _t(_R.REQUESTED, _R.STARTING),
    "withdraw": _t(_R.REQUESTED, _R.STOPPED),
    "spawned": _t(_R.STARTING, _R.STARTING),  # `flwr run` has a pid; Flower's run id comes next
    "note": _t(_R.STARTING, _R.STARTING),  # why a claimed run is not spawned yet
    "accepted": _t(_R.STARTING, _R.RUNNING),  # Flower accepted the run (its run id is known)
    "reattached": _t(_R.RUNNING, _R.RUNNING),
    "waiting": _t(
        _R.RUNNING, _R.RUNNING
    ),  # what a running run waits for (nodes), or that it no longer does  # `flwr run` died; FedML follows the run with `flwr log`
    "stop": _t((_R.STARTING, _R.RUNNING), _R.STOPPING),
    "complete": _t(RUN_LIVE_STATUSES, _R.COMPLETED),
    "fail": _t(RUN_LIVE_STATUSES, _R.FAILED),
    "end_stopped": _t(RUN_LIVE_STATUSES, _R.STOPPED),
}

_E = EnrollmentStatus
ENROLLMENT_TRANSITIONS: dict[str, Transition[EnrollmentStatus]] = {
    "register": _t(_E.REQUESTED, _E.REGISTERED),
    "fail": _t(_E.REQUESTED, _E.FAILED),
    "withdraw": _t(_E.REQUESTED, _E.REVOKED),  # revoked before any supervisor took it
    "request_revoke": _t(_E.REGISTERED, _E.REVOKE_REQUESTED),
    "revoke": _t(_E.REVOKE_REQUESTED, _E.REVOKED),
}

RUN_END_TRANSITION = {_R.COMPLETED: "complete", _R.FAILED: "fail", _R.STOPPED: "end_stopped"}


def legal_targets(table: dict[str, Transition[S]], status: S) -> set[S]:
    """Every status a record in `status` may move to (the table read the other way)."""
    return {t.target for t in table.values() if status in t.sources}


class SessionQuerySet(models.QuerySet):
    def live(self) -> SessionQuerySet:
        return self.filter(status__in=SESSION_LIVE_STATUSES)

    def claimed(self) -> SessionQuerySet:
        return self.filter(status__in=SESSION_CLAIMED_STATUSES)

    def requested(self) -> SessionQuerySet:
        return self.filter(status=SessionStatus.REQUESTED)

    def running(self) -> SessionQuerySet:
        return self.filter(status=SessionStatus.RUNNING)

    def stoppable(self) -> SessionQuerySet:
        """Claimed and not yet told to stop: what a stop request can still act on."""
        return self.filter(status__in=(SessionStatus.STARTING, SessionStatus.RUNNING))

    def ended_by_itself(self) -> SessionQuerySet:
        return self.filter(status__in=SESSION_ENDED_BY_ITSELF)

    def superlinks(self) -> SessionQuerySet:
        return self.filter(kind=SessionKind.SUPERLINK)

    def supernodes(self) -> SessionQuerySet:
        return self.filter(kind=SessionKind.SUPERNODE)


class RunQuerySet(models.QuerySet):
    def live(self) -> RunQuerySet:
        return self.filter(status__in=RUN_LIVE_STATUSES)

    def claimed(self) -> RunQuerySet:
        return self.filter(status__in=RUN_CLAIMED_STATUSES)

    def requested(self) -> RunQuerySet:
        return self.filter(status=RunStatus.REQUESTED)

    def stoppable(self) -> RunQuerySet:
        return self.filter(status__in=(RunStatus.STARTING, RunStatus.RUNNING))


class EnrollmentQuerySet(models.QuerySet):
    def live(self) -> EnrollmentQuerySet:
        return self.filter(status__in=ENROLLMENT_LIVE_STATUSES)

    def pending(self) -> EnrollmentQuerySet:
        return self.filter(status__in=ENROLLMENT_PENDING_STATUSES)
