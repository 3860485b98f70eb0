"""The supervisor: the one process that spawns, watches, stops and reaps Flower's processes.

A small loop (`loop.Supervisor`) steps one worker per job, each in a module of its own:
`heartbeat`, `reaper` (exits, orphans, SIGKILL escalation), `telemetry`, `sessions`, `runs`,
`finisher` (a run's outcome from Flower), `enrollments` and `reconcile` (the restart policy).
Every process starts through an injected `launcher`. docs/architecture.md describes the loop,
its restart policy and its threads.
"""

from orchestration.supervisor.launcher import Command, FlowerLauncher, Launcher, RunControl
from orchestration.supervisor.loop import Supervisor

__all__ = ["Command", "FlowerLauncher", "Launcher", "RunControl", "Supervisor"]
