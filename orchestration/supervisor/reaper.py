"""The reaper: collects exited children, reports each exit once its output is read, sweeps
Flower's orphans (the supervisor is their subreaper) and escalates SIGTERM to SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from django.conf import settings

from orchestration import procs
from orchestration.supervisor.children import ChildTable
from orchestration.supervisor.common import DETAIL_TAIL_LINES, EOF_WAIT, ORPHAN_SWEEP_INTERVAL, Child


class Reaper:
    def __init__(self, *, table: ChildTable, subreaper: bool) -> None:
        self.table = table
        self.subreaper = subreaper
        # Loop thread only.
        self._draining: dict[int, tuple[Child, float]] = {}  # reaped, pipes not at EOF yet: pid -> (child, when)
        self._last_sweep = 0.0
        self._orphans_termed: set[int] = set()

    def step(self) -> bool:
        did = self.reap()
        did |= self._report_drained()
        self._sweep_orphans()
        did |= self.escalate()
        return did

    def busy(self) -> bool:
        return bool(self._draining)

    def reap(self) -> bool:
        ended = self.table.reap()
        now = time.monotonic()
        for child in ended:
            # Anything left in its group (Flower's app processes) goes with it.
            procs.signal_group(child.pid, signal.SIGKILL)
            self._draining[child.pid] = (child, now)
        return bool(ended)

    def _report_drained(self) -> bool:
        # The pipes may still hold the last lines: wait for EOF (a bounded while) before reporting.
        now = time.monotonic()
        did = False
        for pid, (child, reaped_at) in list(self._draining.items()):
            if child.io_done.is_set() or now - reaped_at > EOF_WAIT:
                del self._draining[pid]
                self.table.report_exit(child, recent_lines=DETAIL_TAIL_LINES)
                did = True
        return did

    def _sweep_orphans(self) -> None:
        now = time.monotonic()
        if not self.subreaper or now - self._last_sweep <= ORPHAN_SWEEP_INTERVAL:
            return
        self._last_sweep = now
        with self.table.registry_locked() as known:
            for pid in procs.flower_orphans(parent=os.getpid(), known=known):
                # SIGTERM first; a second sweep finds it again if it lingers, then SIGKILL.
                sig = signal.SIGKILL if pid in self._orphans_termed else signal.SIGTERM
                self._orphans_termed.add(pid)
                _signal_orphan(pid, sig)

    def sweep_orphans_until_none(self, deadline: float) -> None:
        """At shutdown: every Flower orphan goes at once, and so do those its death leaves to us
        (a SuperLink's `flower-superexec`, then its `flwr-serverapp`), until none is left."""
        if not self.subreaper:
            return
        while time.monotonic() < deadline:
            with self.table.registry_locked() as known:
                orphans = procs.flower_orphans(parent=os.getpid(), known=known)
            if not orphans:
                return
            for pid in orphans:
                _signal_orphan(pid, signal.SIGKILL)
            self.reap()
            time.sleep(0.05)  # the kernel re-parents their children as they die

    def escalate(self) -> bool:
        """SIGKILL a group still alive STOP_TIMEOUT_SECONDS after SIGTERM, or a command past its deadline."""
        now = time.monotonic()
        timeout = settings.STOP_TIMEOUT_SECONDS
        did = False
        for child in self.table.live():
            if not child.alive or child.kill_sent_at:
                continue
            context = child.context
            if child.term_sent_at and now - child.term_sent_at > timeout:
                child.kill_sent_at = now
                procs.signal_group(child.pid, signal.SIGKILL)
                if context.owner is not None:
                    self.table.system(
                        context.owner, context.source, f"[fedml] no exit {timeout:g}s after SIGTERM: sent SIGKILL"
                    )
                did = True
            elif context.deadline is not None and now > context.deadline:
                child.kill_sent_at = now
                procs.signal_group(child.pid, signal.SIGKILL)
                did = True
        return did


def _signal_orphan(pid: int, sig: signal.Signals) -> None:
    """Its process group if it leads one, else the process alone."""
    if not procs.signal_group(pid, sig):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
