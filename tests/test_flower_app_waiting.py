"""The ServerApp's grid wrapper tells FedML which nodes a run waits for, and gives up after
`nodes-timeout` (Flower's strategy would wait for ever). A scripted grid and clock stand in
for Flower's Grid and time; the code under test is the shipped flower_app."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.stack import ROOT


@pytest.fixture
def server_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(ROOT / "flower_app"))
    import fedml_app.server_app as module

    yield module


class ScriptedGrid:
    """Answers get_node_ids from a script, one answer per call (the last one repeats)."""

    def __init__(self, *answers: list[int]) -> None:
        self.answers = list(answers)

    def get_node_ids(self) -> list[int]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watched(server_app: ModuleType, grid: ScriptedGrid, clock: Clock, timeout: float = 60.0):  # noqa: ANN201
    told: list[tuple[list[int], bool]] = []
    wrapper = server_app.FastPollGrid(
        grid,
        min_nodes=2,
        nodes_timeout=timeout,
        report=lambda nodes, gave_up: told.append((nodes, gave_up)),
        clock=clock,
    )
    return wrapper, told


def test_a_wait_is_told_once_per_change_and_once_when_it_is_over(server_app):
    clock = Clock()
    grid, told = watched(server_app, ScriptedGrid([5], [5], [5, 7], [7, 5, 9]), clock)

    assert [sorted(grid.get_node_ids()) for _ in range(4)] == [[5], [5], [5, 7], [5, 7, 9]]
    assert told == [([5], False), ([5, 7], False)]  # waiting with node 5; enough with 5 and 7


def test_the_run_fails_after_nodes_timeout_saying_how_many_were_connected(server_app):
    clock = Clock()
    grid, told = watched(server_app, ScriptedGrid([5]), clock, timeout=60)
    grid.get_node_ids()
    clock.now += 59
    grid.get_node_ids()  # still within the timeout

    clock.now += 1
    with pytest.raises(server_app.NodesTimeout, match=r"waited 60 s for nodes: 1 connected \(minimum required: 2\)"):
        grid.get_node_ids()
    assert told == [([5], False), ([5], True)]


def test_the_clock_restarts_when_enough_nodes_came_back(server_app):
    clock = Clock()
    grid, _ = watched(server_app, ScriptedGrid([5], [5, 7], [5]), clock, timeout=60)
    grid.get_node_ids()
    clock.now += 50
    grid.get_node_ids()  # enough: the wait is over
    clock.now += 50
    assert grid.get_node_ids() == [5]  # a new wait, 0 s old: no timeout


def test_a_timeout_of_zero_waits_for_ever_as_flower_does(server_app):
    clock = Clock()
    grid, _ = watched(server_app, ScriptedGrid([5]), clock, timeout=0)
    grid.get_node_ids()
    clock.now += 1e9
    assert grid.get_node_ids() == [5]
