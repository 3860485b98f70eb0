"""Federated runs: requests from the web side, the supervisor's transitions, and round metrics."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import audit_record
from core.errors import Conflict, InvalidInput
from orchestration import flower, selectors
from orchestration.models import (
    FederatedRun,
    Project,
    RoundMetric,
    RunStatus,
    SessionStatus,
)
from orchestration.services.common import invalid_input, supervisor_require_alive
from orchestration.services.events import event_emit, run_event_emit
from orchestration.services.sessions import WITHDRAWN_DETAIL
from orchestration.services.transitions import run_transition
from orchestration.states import RUN_END_TRANSITION, WAITING_FOR_NODES

# A letter or digit first: the name is an argv item, and "-x" would be read as a flag.
FEDERATION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@transaction.atomic
def run_withdraw(*, run: FederatedRun) -> bool:
    if not FederatedRun.objects.filter(pk=run.pk, status=RunStatus.REQUESTED).delete()[0]:
        return False
    event_emit(project_id=run.project_id, type="run.deleted", payload={"run_id": str(run.pk)})
    return True


PROJECT_RUN_CONFIG = "run_config"  # key of projects.config holding the project's run-config defaults


def project_run_defaults(*, project: Project, app_config: dict[str, Any]) -> dict[str, Any]:
    """The project's run-config defaults that the app still has (keys may vanish from the app)."""
    values = (project.config or {}).get(PROJECT_RUN_CONFIG)
    if not isinstance(values, dict):
        return {}
    return {
        key: value
        for key, value in values.items()
        if key in app_config and key not in flower.RESERVED_RUN_CONFIG_KEYS and isinstance(value, int | float | str)
    }


def project_run_config_set(*, project: Project, values: dict[str, str], actor: Any, via: str) -> dict[str, Any]:
    """Set the run-config defaults of a project's runs (`key` -> TOML value text, as `--run-config` takes)."""
    app_config = flower.read_app_config(settings.FLOWER_APP_DIR)
    typed: dict[str, Any] = {}
    for key, text in values.items():
        if key not in app_config or key in flower.RESERVED_RUN_CONFIG_KEYS:
            valid = ", ".join(sorted(set(app_config) - flower.RESERVED_RUN_CONFIG_KEYS))
            raise InvalidInput(f"{key!r} is not a key of the app's run config (its keys: {valid})", field="run_config")
        try:
            typed[key] = flower.run_config_value(text)
        except ValueError as exc:  # not TOML, or a value Flower would not read back unchanged
            raise InvalidInput(f"{key}: {exc}", field="run_config") from None
        if type(typed[key]) is not type(app_config[key]) and not (
            isinstance(typed[key], int) and isinstance(app_config[key], float)
        ):
            raise InvalidInput(
                f"{key} must be a {type(app_config[key]).__name__} like the app's default {app_config[key]!r}",
                field="run_config",
            )
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        locked.config = {**(locked.config or {}), PROJECT_RUN_CONFIG: typed}
        locked.save(update_fields=["config", "updated_at"])
        project.config = locked.config
    audit_record(actor=actor, action="project.run_config", outcome="ok", target=project.slug, via=via, detail=typed)
    return typed


@transaction.atomic
def run_request_start(
    *,
    project: Project,
    federation_name: str = "production",
    stream: bool = True,
    extra_args: list[str] | None = None,
    label: str = "",
) -> FederatedRun:
    """Record the intent to start a Flower run against the project's SuperLink."""
    if not isinstance(federation_name, str) or not FEDERATION_NAME_RE.match(federation_name):
        raise InvalidInput(
            "federation_name must be 1-64 letters, digits, '-' or '_', starting with a letter or digit",
            field="federation_name",
        )
    try:
        args = flower.validate_extra_args(extra_args, allowed=flower.RUN_EXTRA_FLAGS)
    except flower.FlowerArgError as exc:
        raise invalid_input(exc) from None
    app_config = flower.read_app_config(settings.FLOWER_APP_DIR)
    overrides: dict[str, Any] = {}
    for index, token in enumerate(args):
        if token == "--run-config":  # validate_extra_args normalised `--flag=value` to two items
            for key, value in flower.parse_run_config(args[index + 1]).items():
                if key not in app_config:
                    # The SuperLink would refuse the run; say so now, naming the key.
                    raise InvalidInput(
                        f"--run-config: {key!r} is not a key of the app's [tool.flwr.app.config] "
                        f"(its keys: {', '.join(sorted(set(app_config) - flower.RESERVED_RUN_CONFIG_KEYS))})",
                        field="extra_args",
                    )
                overrides[key] = flower.run_config_value(value)
    # The project's defaults (set by its coordinator) apply where the request says nothing.
    defaults = {
        k: v for k, v in project_run_defaults(project=project, app_config=app_config).items() if k not in overrides
    }
    overrides = {**defaults, **overrides}
    rounds = overrides.get("num-server-rounds", app_config.get("num-server-rounds", 0))
    if not re.fullmatch(r"\d{1,9}", str(rounds), re.ASCII):
        raise InvalidInput(f"num-server-rounds must be a non-negative integer, got {rounds!r}", field="extra_args")
    num_rounds = int(rounds)
    supervisor_require_alive()
    superlink = selectors.session_live_superlink(project=project)
    if superlink is None or superlink.status != SessionStatus.RUNNING:
        raise Conflict("no SuperLink is running: start it first (POST /api/coordinator/superlink/start)")
    active = selectors.run_live(project=project)
    if active is not None:
        raise Conflict(f"run {active.id} is already {active.status}", extra={"run_id": str(active.id)})
    config = {
        "federation_name": federation_name,
        "stream": bool(stream),
        "extra_args": args,
        "app_config": {**app_config, **overrides},
        "num_rounds": num_rounds,
        "project_run_config": defaults,
    }
    try:
        with transaction.atomic():
            run = FederatedRun.objects.create(
                project=project,
                coordinator_session=superlink,
                federation_name=federation_name,
                label=label or f"run {timezone.now():%Y-%m-%d %H:%M:%S}",
                config=config,
            )
            run_event_emit(run_id=run.pk)
            return run
    except IntegrityError:
        raise Conflict("a run is already active for this project") from None


def run_request_stop(*, project: Project) -> FederatedRun:
    """Ask the supervisor to stop the project's live run (from any worker)."""
    run = selectors.run_live(project=project)
    if run is None:
        raise Conflict("no run is active")
    return run_request_stop_by_id(run_id=run.pk)


def run_request_stop_by_id(*, run_id: Any) -> FederatedRun:
    """Stop one run: withdrawn if no supervisor claimed it yet, else `stop_requested_at` tells its supervisor."""
    if not run_transition(run_id=run_id, name="withdraw", ended_at=timezone.now(), status_detail=WITHDRAWN_DETAIL):
        FederatedRun.objects.live().filter(pk=run_id, stop_requested_at__isnull=True).update(
            stop_requested_at=timezone.now()
        )
    return FederatedRun.objects.get(pk=run_id)


def run_claim(*, run_id: Any, supervisor_id: Any) -> bool:
    """Exactly one supervisor wins a requested run."""
    return run_transition(run_id=run_id, name="claim", supervisor_id=supervisor_id)


@transaction.atomic
def run_mark_spawned(*, run_id: Any, pid: int, log_path: str, identity: dict[str, Any]) -> bool:
    run = FederatedRun.objects.get(pk=run_id)
    config = {**run.config, "process": identity}
    return run_transition(
        run_id=run_id,
        name="spawned",
        pid=pid,
        started_at=timezone.now(),
        log_path=log_path,
        config=config,
        status_detail="",
    )


def run_mark_reattached(
    *, run_id: Any, exit_code: int | None, signal: int | None, pid: int, identity: dict[str, Any], detail: str
) -> bool:
    """`flwr run` died while Flower runs the run: record how, and the `flwr log --stream` following it now."""
    run = FederatedRun.objects.get(pk=run_id)
    config = {**run.config, "process": identity}
    return run_transition(
        run_id=run_id,
        name="reattached",
        exit_code=exit_code,
        signal=signal,
        pid=pid,
        config=config,
        status_detail=detail[:500],
    )


def run_note_waiting(*, run_id: Any, detail: str) -> bool:
    """Say what a running run waits for, or ("") that it no longer does: then the detail is
    cleared only if it still says so. Its event tells every follower."""
    where = {} if detail else {"status_detail__startswith": WAITING_FOR_NODES}
    return run_transition(run_id=run_id, name="waiting", where=where, status_detail=detail[:500])


def run_note(*, run_id: Any, detail: str) -> bool:
    """Say why a claimed run is not spawned yet (shown by the API, admin and dashboard)."""
    return run_transition(run_id=run_id, name="note", where={"pid__isnull": True}, status_detail=detail[:500])


@transaction.atomic
def run_set_flower_run_id(*, run_id: Any, flower_run_id: str) -> bool:
    """Flower accepted the run: its run id is known and the run is running."""
    FederatedRun.objects.filter(pk=run_id, flower_run_id="").update(flower_run_id=flower_run_id)
    return run_transition(run_id=run_id, name="accepted")


def run_mark_stopping(*, run_id: Any) -> bool:
    return run_transition(run_id=run_id, name="stop")


def run_record_process_exit(*, run_id: Any, exit_code: int | None, signal: int | None) -> None:
    FederatedRun.objects.filter(pk=run_id).update(exit_code=exit_code, signal=signal)


def run_mark_ended(*, run_id: Any, status: RunStatus, detail: str) -> bool:
    """End a live run `completed`, `failed` or `stopped`, saying why."""
    return run_transition(
        run_id=run_id, name=RUN_END_TRANSITION[status], ended_at=timezone.now(), status_detail=detail[:20000]
    )


def round_metric_record(
    *, run_id: Any, round: int, phase: str, aggregated: dict[str, Any], per_node: dict[str, Any], num_rounds: int | None
) -> None:
    """Store one round's metrics (idempotent per run/round/phase) and fold them into run.metrics."""
    with transaction.atomic():
        RoundMetric.objects.update_or_create(
            run_id=run_id, round=round, phase=phase, defaults={"aggregated": aggregated, "per_node": per_node}
        )
        run = FederatedRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return
        metrics = dict(run.metrics or {})
        by_phase = dict(metrics.get(phase, {}))
        by_phase[str(round)] = aggregated
        metrics[phase] = by_phase
        metrics["last_round"] = max(int(metrics.get("last_round", 0)), round)
        if num_rounds:
            metrics["num_rounds"] = num_rounds
        FederatedRun.objects.filter(pk=run_id).update(metrics=metrics)
        event_emit(
            project_id=run.project_id,
            type="run.round",
            payload={
                "run_id": str(run_id),
                "round": round,
                "phase": phase,
                "num_rounds": metrics.get("num_rounds"),
                "aggregated": aggregated,
                "per_node": per_node,
            },
        )


def run_record_artifact(*, run_id: Any, path: str) -> None:
    with transaction.atomic():
        run = FederatedRun.objects.select_for_update().filter(pk=run_id).first()
        if run is not None:
            FederatedRun.objects.filter(pk=run_id).update(metrics={**(run.metrics or {}), "artifact_path": path})
