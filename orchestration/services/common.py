"""What every service module shares: the supervisor-alive check and turning Flower argument errors into InvalidInput."""

from __future__ import annotations

from core.errors import InvalidInput, SupervisorUnavailable
from orchestration import flower, selectors
from orchestration.runtime_config import RESTART_POLICIES

SUPERVISOR_HINT = (
    "No supervisor is running, so nothing can be started. Start one with `python manage.py runsupervisor`."
)


def invalid_input(exc: flower.FlowerArgError) -> InvalidInput:
    return InvalidInput(exc.message, field=exc.field)


def restart_policy_require_valid(*, restart_policy: str) -> str:
    if restart_policy not in RESTART_POLICIES:
        raise InvalidInput(f"restart_policy must be one of {', '.join(RESTART_POLICIES)}", field="restart_policy")
    return restart_policy


def supervisor_require_alive() -> None:
    if not selectors.supervisors_alive().exists():
        raise SupervisorUnavailable(SUPERVISOR_HINT, extra={"hint": "python manage.py runsupervisor"})
