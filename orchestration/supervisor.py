"""The supervisor: the one process that spawns, watches, stops and reaps Flower's processes.

Web workers only record intent (rows in `requested` state, `stop_requested_at`); this loop
claims intent with conditional updates, so two supervisors never start the same thing.

Restart policy (documented in docs/supervisor.md): rows left live by a supervisor that died
are reconciled at start-up. A process that is gone is marked `lost`; one that is still alive
is terminated (its pipes died with the old supervisor, so its log could not be complete) and
marked `lost` with that cause. A run is asked to stop through Flower first, and its row says
what Flower reported.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from orchestration import flower, procs, selectors, services
from orchestration.logpipe import Line, LogWriter, Owner
from orchestration.models import FederatedRun, LogStream, NodeEnrollment, NodeSession, RunStatus, SessionKind

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.2
HEARTBEAT_INTERVAL = 1.0
STATUS_POLL_INTERVAL = 2.0
RUN_STOP_GRACE = 8.0  # after `flwr stop`, how long `flwr run` may take to exit by itself
SUPERLINK_STOP_WAIT_FOR_RUN = 20.0
SUPERLINK_READY_TIMEOUT = 20.0
ORPHAN_SWEEP_INTERVAL = 1.0
ENROLL_RETRY_SECONDS = 30.0  # a run waits this long for its SuperLink to listen


def _rotate(path: Path) -> None:
    """`logs/superlink.log` is always the current process; earlier ones keep a timestamp."""
    if path.exists() and path.stat().st_size:
        stamp = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}")
            n += 1
        path.rename(target)


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else host


class Supervisor:
    def __init__(self, *, node_ids: list[Any] | None = None, project_ids: list[Any] | None = None) -> None:
        self.id = uuid.uuid4()
        self.hostname = socket.gethostname()
        self.started_at = timezone.now()
        services.data_dirs_ensure()
        if node_ids is None or project_ids is None:
            coordinator = services.coordinator_node_ensure()
            participant = services.participant_node_ensure()
            node_ids = [coordinator.pk, participant.pk]
            project_ids = list({coordinator.project_id, participant.project_id})
        self.node_ids = node_ids
        self.project_ids = project_ids
        self.children: dict[int, Child] = {}
        self._children_lock = threading.Lock()
        self.writer = LogWriter(on_saved=self._on_lines_saved)
        self.reader = procs.PipeReader(on_line=self._on_line, on_eof=lambda child: None)
        self._last_beat = 0.0
        self._session_children: dict[str, Child] = {}
        self._run_children: dict[str, Child] = {}
        self._finishers: dict[str, threading.Thread] = {}
        self._deferred_superlink_stop: dict[str, float] = {}
        self._run_stop_sent: dict[str, float] = {}
        self._runs_awaiting_superlink: dict[str, float] = {}  # run id -> when it was claimed
        self.shutting_down = False
        self.subreaper = procs.set_child_subreaper()
        self._last_sweep = 0.0
        self._orphans_termed: set[int] = set()
        self._enroll_retry_at: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.writer.start()
        self.reader.start()
        self.heartbeat(force=True)
        # Reconciling waits on `flwr stop`/`flwr ls` children, which the loop reaps: run it beside the loop.
        self._reconciler = threading.Thread(target=self._reconcile_thread, name="reconcile", daemon=True)
        self._reconciler.start()

    def _reconcile_thread(self) -> None:
        try:
            self.reconcile()
        except Exception:
            logger.exception("reconciliation failed")
        finally:
            connection.close()

    def run_forever(self, stop_event: threading.Event) -> None:
        self.start()
        try:
            while not stop_event.is_set():
                did_work = self.step()
                if not did_work:
                    stop_event.wait(POLL_INTERVAL)
        finally:
            self.shutdown()

    def step(self) -> bool:
        """One pass of the loop; returns whether it did anything."""
        close_old_connections()
        did = self.heartbeat()
        did |= self.reap()
        if not self.shutting_down:
            did |= self.claim_and_spawn()
        did |= self.handle_stop_requests()
        if not self.shutting_down:
            did |= self.handle_enrollments()
        did |= self.escalate()
        return did

    def heartbeat(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_INTERVAL:
            return False
        services.supervisor_heartbeat(
            supervisor_id=self.id, hostname=self.hostname, pid=os.getpid(), started_at=self.started_at
        )
        self._last_beat = now
        return False

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop everything we run: runs first, then SuperNodes, then the SuperLink."""
        self.shutting_down = True
        timeout = settings.STOP_TIMEOUT_SECONDS + SUPERLINK_STOP_WAIT_FOR_RUN + 10 if timeout is None else timeout
        close_old_connections()
        for run_id in list(self._runs_awaiting_superlink):
            self._runs_awaiting_superlink.pop(run_id)
            services.run_mark_ended(
                run_id=run_id, status=RunStatus.STOPPED, detail="supervisor shut down before `flwr run` was started"
            )
        for run_id in list(self._run_children):
            FederatedRun.objects.filter(pk=run_id, stop_requested_at__isnull=True).update(
                stop_requested_at=timezone.now()
            )
        for session_id in list(self._session_children):
            NodeSession.objects.filter(pk=session_id, stop_requested_at__isnull=True).update(
                stop_requested_at=timezone.now(), status_detail="supervisor shut down"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self._live_children() or self._busy_finishers()):
            self.step()
            time.sleep(0.1)
        for child in self._live_children():
            procs.signal_group(child.pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while time.monotonic() < end and self._live_children():
            self.reap()
            time.sleep(0.05)
        for thread in list(self._finishers.values()):
            thread.join(timeout=5)
        self.writer.flush()
        services.supervisor_mark_stopped(supervisor_id=self.id)
        self.reader.stop()
        self.writer.stop()
        self.writer.join(timeout=10)

    def _live_children(self) -> list[Child]:
        with self._children_lock:
            return [c for c in self.children.values() if c.alive]

    def _busy_finishers(self) -> bool:
        return any(t.is_alive() for t in self._finishers.values())

    # ------------------------------------------------------------------ spawning
    def _spawn(
        self,
        argv: list[str],
        *,
        flwr_home: Path,
        label: str,
        owner: Owner | None,
        source: str,
        log_path: Path | None = None,
        capture: bool = False,
    ) -> Child:
        flwr_home.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            self.writer.open(owner, log_path)
        # Spawn and register under one lock, so the orphan sweep never mistakes a new child.
        with self._children_lock:
            child = procs.spawn(
                argv,
                env=flower.child_env(flwr_home=flwr_home, bin_dir=settings.FLOWER_BIN_DIR),
                cwd=settings.DATA_DIR,
                label=label,
                context={"owner": owner, "source": source, "captured": [] if capture else None},
            )
            self.children[child.pid] = child
        if owner is not None:
            self._system(owner, source, f"[fedml] started pid {child.pid}: {' '.join(argv)}")
        self.reader.add(child)
        return child

    def _system(self, owner: Owner, source: str, text: str) -> None:
        self.writer.put(Line(owner=owner, stream=LogStream.SYSTEM, source=source, ts=timezone.now(), text=text))

    def _on_line(self, child: Child, stream: str, ts: datetime, text: str) -> None:
        captured = child.context.get("captured")
        if captured is not None:
            captured.append(text)
        owner = child.context.get("owner")
        if owner is not None:
            self.writer.put(Line(owner=owner, stream=stream, source=child.context["source"], ts=ts, text=text))

    def _on_lines_saved(self, owner: Owner, lines: list[Line]) -> None:
        """Runs in the writer after a batch is saved: Flower's run id and telemetry."""
        for line in lines:
            if "FEDML_" in line.text:
                self._telemetry(line.text)
            if owner.kind == "run" and line.source == "run" and "run" in line.text:
                flower_run_id = flower.parse_run_started(line.text)
                if flower_run_id:
                    services.run_set_flower_run_id(run_id=owner.id, flower_run_id=flower_run_id)

    def _telemetry(self, text: str) -> None:
        metrics = flower.parse_metrics(text)
        if metrics is not None:
            run_id = metrics.get("fedml_run_id")
            if run_id and FederatedRun.objects.filter(pk=_uuid_or_none(run_id)).exists():
                services.round_metric_record(
                    run_id=run_id,
                    round=metrics["round"],
                    phase=metrics["phase"],
                    aggregated=metrics.get("aggregated", {}),
                    per_node=metrics.get("per_node", {}),
                    num_rounds=metrics.get("num_rounds"),
                )
            return
        artifact = flower.parse_artifact(text)
        if artifact is not None:
            run_id = artifact.get("fedml_run_id")
            if run_id and FederatedRun.objects.filter(pk=_uuid_or_none(run_id)).exists():
                services.run_record_artifact(run_id=run_id, path=artifact["path"])

    def claim_and_spawn(self) -> bool:
        did = False
        for session in selectors.sessions_to_claim(node_ids=self.node_ids):
            if services.session_claim(session_id=session.pk, supervisor_id=self.id):
                self._spawn_session(NodeSession.objects.select_related("node").get(pk=session.pk))
                did = True
        for run in selectors.runs_to_claim(project_ids=self.project_ids):
            # Claimed at once, so the request learns a supervisor has it even while the
            # SuperLink is still coming up; spawned below once the SuperLink listens.
            if services.run_claim(run_id=run.pk, supervisor_id=self.id):
                self._runs_awaiting_superlink[str(run.pk)] = time.monotonic()
                did = True
        did |= self._spawn_runs_whose_superlink_listens()
        return did

    def _spawn_runs_whose_superlink_listens(self) -> bool:
        did = False
        for run_key, claimed_at in list(self._runs_awaiting_superlink.items()):
            run = FederatedRun.objects.select_related("coordinator_session").filter(pk=run_key).first()
            if run is None or run.status != RunStatus.STARTING:
                self._runs_awaiting_superlink.pop(run_key, None)  # stopped meanwhile
                continue
            waited = time.monotonic() - claimed_at
            # `flwr run` fails at once if the SuperLink is not listening yet. After the
            # timeout it is spawned anyway and reports what is wrong.
            if waited < SUPERLINK_READY_TIMEOUT and not _listening(run.coordinator_session):
                if not run.status_detail:
                    cfg = run.coordinator_session.runtime_config if run.coordinator_session else {}
                    services.run_note(
                        run_id=run.pk,
                        detail=f"waiting for the SuperLink at {cfg.get('address', '?')} to accept connections",
                    )
                continue
            self._runs_awaiting_superlink.pop(run_key)
            self._spawn_run(run)
            did = True
        return did

    def _spawn_session(self, session: NodeSession) -> None:
        cfg = session.runtime_config
        owner = Owner("session", session.pk)
        try:
            if session.kind == SessionKind.SUPERLINK:
                certs = cfg.get("certificates")
                argv = flower.superlink_argv(
                    bin_dir=settings.FLOWER_BIN_DIR,
                    host=cfg["host"],
                    port=cfg["port"],
                    database=Path(cfg["database"]),
                    insecure=cfg["insecure"],
                    certificates=flower.ServerCertificates(
                        Path(certs["ca_cert"]), Path(certs["server_cert"]), Path(certs["server_key"])
                    )
                    if certs
                    else None,
                    extra_args=cfg.get("extra_args", []),
                )
                Path(cfg["database"]).parent.mkdir(parents=True, exist_ok=True)
                log_path = settings.LOG_DIR / "superlink.log"
                _rotate(log_path)
                source = "superlink"
            else:
                argv = flower.supernode_argv(
                    bin_dir=settings.FLOWER_BIN_DIR,
                    superlink_address=cfg["superlink_address"],
                    host=cfg["host"],
                    port=cfg["port"],
                    node_config=cfg.get("node_config", {}),
                    insecure=cfg["insecure"],
                    root_certificates=Path(cfg["root_certificates"]) if cfg.get("root_certificates") else None,
                    extra_args=cfg.get("extra_args", []),
                    auth_private_key=Path(cfg["auth_private_key"]) if cfg.get("auth_private_key") else None,
                )
                partition = cfg.get("node_config", {}).get("partition-id", 0)
                log_path = settings.LOG_DIR / f"supernode-p{partition}-{str(session.pk)[:8]}.log"
                source = f"supernode:{str(session.pk)[:8]}"
            child = self._spawn(
                argv,
                flwr_home=settings.FLWR_HOME_ROOT / f"{session.kind}-{session.pk}",
                label=f"{session.kind} {session.pk}",
                owner=owner,
                source=source,
                log_path=log_path,
            )
        except (OSError, KeyError, ValueError) as exc:
            # Our infrastructure failed, not the user's app: say so.
            logger.exception("could not spawn session %s", session.pk)
            services.session_mark_failed_to_start(
                session_id=session.pk, detail=f"FedML could not start the process: {exc}"
            )
            return
        child.context["session_id"] = str(session.pk)
        self._session_children[str(session.pk)] = child
        services.session_mark_running(
            session_id=session.pk, pid=child.pid, log_path=str(log_path), identity=procs.process_identity(child.pid)
        )

    def _cli_home(self, run: FederatedRun, purpose: str) -> Path:
        """Each `flwr` call gets its own FLWR_HOME holding the run's SuperLink connection."""
        return _connection_home(
            settings.FLWR_HOME_ROOT / f"run-{run.pk}" / purpose, run.coordinator_session, run.federation_name
        )

    def _spawn_run(self, run: FederatedRun) -> None:
        owner = Owner("run", run.pk)
        log_path = settings.LOG_DIR / "run.log"
        try:
            home = self._cli_home(run, "run")
            flower.set_current_run_id(settings.FLOWER_APP_DIR, str(run.pk))
            argv = flower.run_argv(
                bin_dir=settings.FLOWER_BIN_DIR,
                app_dir=settings.FLOWER_APP_DIR,
                connection=run.federation_name or "production",
                # Always attached: the ServerApp's output (its log and FedML's metrics lines)
                # reaches nobody but the run's log stream. `stream: false` is accepted for
                # compatibility with the earlier API.
                stream=True,
                run_config={"current-run-id": str(run.pk), "artifact-dir": str(settings.ARTIFACTS_DIR)},
                extra_args=run.config.get("extra_args", []),
            )
            _rotate(log_path)
            child = self._spawn(
                argv, flwr_home=home, label=f"run {run.pk}", owner=owner, source="run", log_path=log_path
            )
        except (OSError, KeyError, ValueError) as exc:
            logger.exception("could not spawn run %s", run.pk)
            self.writer.open(owner, None)
            self._system(owner, "run", f"[fedml] could not start `flwr run`: {exc}")
            self.writer.flush()
            flower.set_current_run_id(settings.FLOWER_APP_DIR, "", only_if=str(run.pk))
            services.run_mark_ended(
                run_id=run.pk, status=RunStatus.FAILED, detail=f"FedML could not start `flwr run`: {exc}"
            )
            return
        child.context["run_id"] = str(run.pk)
        self._run_children[str(run.pk)] = child
        services.run_mark_spawned(
            run_id=run.pk, pid=child.pid, log_path=str(log_path), identity=procs.process_identity(child.pid)
        )

    def control_command(
        self, run: FederatedRun, argv: list[str], *, purpose: str, log: bool, timeout: float = 60
    ) -> tuple[Child, list[str]]:
        """Run a short `flwr` command (stop, ls) for a run and wait for it. Called off the main loop."""
        owner = Owner("run", run.pk) if log else None
        return self._run_cli(
            argv, home=self._cli_home(run, purpose), label=f"{purpose} {run.pk}", owner=owner, timeout=timeout
        )

    def _run_cli(
        self, argv: list[str], *, home: Path, label: str, owner: Owner | None, timeout: float
    ) -> tuple[Child, list[str]]:
        child = self._spawn(argv, flwr_home=home, label=label, owner=owner, source="control", capture=True)
        if not child.exited.wait(timeout):
            procs.signal_group(child.pid, signal.SIGKILL)
            child.exited.wait(5)
        child.io_done.wait(5)
        return child, list(child.context["captured"])

    # ------------------------------------------------------------------ SuperNode enrollment
    def handle_enrollments(self) -> bool:
        """Register or unregister participant keys with the SuperLink (Flower's SuperNode auth)."""
        did = False
        now = time.monotonic()
        for enrollment in selectors.enrollments_pending(project_ids=self.project_ids):
            if self._enroll_retry_at.get(str(enrollment.pk), 0) > now:
                continue
            superlink = selectors.session_live_superlink(project=enrollment.node.project)
            if superlink is None or superlink.status != "running" or not _listening(superlink):
                continue  # registration needs a listening SuperLink; try again when there is one
            if services.enrollment_claim(enrollment_id=enrollment.pk, supervisor_id=self.id):
                threading.Thread(
                    target=self._enroll, args=(enrollment.pk, superlink.pk), name=f"enroll-{enrollment.pk}", daemon=True
                ).start()
                did = True
        return did

    def _enroll(self, enrollment_id: Any, superlink_id: Any) -> None:
        try:
            enrollment = NodeEnrollment.objects.get(pk=enrollment_id)
            superlink = NodeSession.objects.get(pk=superlink_id)
            home = _connection_home(settings.FLWR_HOME_ROOT / f"enrollment-{enrollment.pk}", superlink, "production")
            if enrollment.status == "requested":
                key_file = home / "supernode.pub"
                key_file.write_text(enrollment.public_key + "\n")
                argv = flower.supernode_register_argv(
                    bin_dir=settings.FLOWER_BIN_DIR, public_key_file=key_file, connection="production"
                )
            else:
                argv = flower.supernode_unregister_argv(
                    bin_dir=settings.FLOWER_BIN_DIR, flower_node_id=enrollment.flower_node_id, connection="production"
                )
            _, out = self._run_cli(argv, home=home, label=f"enrollment {enrollment.pk}", owner=None, timeout=60)
            result = flower.parse_cli_json("\n".join(out))
            ok = bool(result and result.get("success"))
            if enrollment.status == "requested" and ok and result and result.get("node-id") is not None:
                services.enrollment_mark_registered(enrollment_id=enrollment.pk, flower_node_id=str(result["node-id"]))
            elif enrollment.status == "revoke_requested" and ok:
                services.enrollment_mark_revoked(enrollment_id=enrollment.pk)
            else:
                error = (result or {}).get("error-message") or "\n".join(out[-10:])
                # A failed registration ends failed (the caller sees why); a revocation is retried.
                retry = enrollment.status == "revoke_requested"
                if retry:
                    self._enroll_retry_at[str(enrollment.pk)] = time.monotonic() + ENROLL_RETRY_SECONDS
                services.enrollment_mark_failed(
                    enrollment_id=enrollment.pk, detail=f"Flower: {error}", keep_status=retry
                )
        except Exception:
            logger.exception("enrollment %s failed", enrollment_id)
            services.enrollment_mark_failed(
                enrollment_id=enrollment_id, detail="FedML failed while talking to Flower", keep_status=True
            )
        finally:
            connection.close()

    # ------------------------------------------------------------------ reaping
    def reap(self) -> bool:
        with self._children_lock:
            ended = procs.reap_all(self.children)
            for child in ended:
                del self.children[child.pid]
            now = time.monotonic()
            if self.subreaper and now - self._last_sweep > ORPHAN_SWEEP_INTERVAL:
                self._last_sweep = now
                for pid in procs.flower_orphans(parent=os.getpid(), known=set(self.children)):
                    # SIGTERM first; a second sweep finds it again if it lingers, then SIGKILL.
                    sig = signal.SIGKILL if pid in self._orphans_termed else signal.SIGTERM
                    self._orphans_termed.add(pid)
                    if not procs.signal_group(pid, sig):
                        _kill(pid, sig)
        for child in ended:
            # Anything left in its group (Flower's app processes) goes with it.
            procs.signal_group(child.pid, signal.SIGKILL)
            threading.Thread(target=self._after_exit, args=(child,), name=f"exit-{child.pid}", daemon=True).start()
        return bool(ended)

    def _after_exit(self, child: Child) -> None:
        # The pipes may still hold the last lines: wait for EOF before recording the end.
        child.io_done.wait(5)
        owner = child.context.get("owner")
        if owner is not None:
            self._system(owner, child.context["source"], f"[fedml] pid {child.pid} {child.describe_exit()}")
        if "session_id" in child.context:
            self.writer.barrier(lambda: self._finish_session(child))
        elif "run_id" in child.context:
            self.writer.barrier(lambda: self._start_run_finisher(child))
        else:
            child.exited.set()
            return
        if owner is not None:
            self.writer.close_owner(owner)

    def _finish_session(self, child: Child) -> None:
        session_id = child.context["session_id"]
        session = NodeSession.objects.get(pk=session_id)
        stop_requested = session.stop_requested_at is not None
        detail = session.status_detail
        if not stop_requested and child.exit_code != 0:
            tail = "\n".join(self.writer.tail(Owner("session", session.pk))[-20:])
            detail = f"{child.describe_exit()}. Last lines:\n{tail}"
        services.session_mark_ended(
            session_id=session_id,
            exit_code=child.exit_code,
            signal=child.exit_signal,
            stop_requested=stop_requested,
            detail=detail or child.describe_exit(),
        )
        self._session_children.pop(session_id, None)
        self._deferred_superlink_stop.pop(session_id, None)
        child.exited.set()

    def _start_run_finisher(self, child: Child) -> None:
        run_id = child.context["run_id"]
        services.run_record_process_exit(run_id=run_id, exit_code=child.exit_code, signal=child.exit_signal)
        child.exited.set()
        thread = threading.Thread(target=self._finish_run, args=(run_id, child), name=f"finish-{run_id}", daemon=True)
        self._finishers[run_id] = thread
        thread.start()

    def _finish_run(self, run_id: str, child: Child) -> None:
        """Take the outcome from Flower (`flwr run` exits 0 whatever happened)."""
        outcome: tuple[str, str] | None
        try:
            outcome = self._finish_run_outcome(run_id, child)
        except Exception:
            logger.exception("finishing run %s failed", run_id)
            outcome = (RunStatus.FAILED, "FedML failed while reading the run's outcome")
        try:
            # Cleared before the terminal status is written: whoever sees the run ended
            # also sees the app's pyproject back to no current run.
            flower.set_current_run_id(settings.FLOWER_APP_DIR, "", only_if=run_id)
            if outcome is not None:
                services.run_mark_ended(run_id=run_id, status=outcome[0], detail=outcome[1])
        finally:
            self._run_children.pop(run_id, None)
            self._run_stop_sent.pop(run_id, None)
            connection.close()

    def _finish_run_outcome(self, run_id: str, child: Child) -> tuple[str, str] | None:
        """The run's terminal (status, detail), or None when something else already ended it."""
        run = FederatedRun.objects.select_related("coordinator_session").get(pk=run_id)
        owner = Owner("run", run.pk)
        tail = "\n".join(self.writer.tail(owner)[-20:])
        if not run.flower_run_id:
            status = RunStatus.STOPPED if run.stop_requested_at else RunStatus.FAILED
            return status, f"`flwr run` {child.describe_exit()} before Flower accepted the run. Last lines:\n{tail}"
        failures = 0
        last_error = ""
        while True:
            result = self.flower_status(run)
            if result is not None and result.finished:
                break
            if result is None:
                failures += 1
                last_error = "could not read the run's status from the SuperLink"
            else:
                failures = 0
            superlink_alive = NodeSession.objects.filter(pk=run.coordinator_session_id, status="running").exists()
            if failures >= 5 or (not superlink_alive and failures >= 1):
                return RunStatus.FAILED, f"{last_error}. Last lines:\n{tail}"
            run.refresh_from_db()
            if run.status not in ("starting", "running", "stopping"):
                return None
            time.sleep(STATUS_POLL_INTERVAL)
        run.refresh_from_db()
        tail = "\n".join(self.writer.tail(owner)[-20:]) or tail
        status, detail = _outcome(result)
        if run.stop_requested_at and status != RunStatus.COMPLETED:
            status = RunStatus.STOPPED
        if status != RunStatus.COMPLETED:
            detail += f". Last lines:\n{tail}"
        return status, detail

    def flower_status(self, run: FederatedRun) -> flower.FlowerRunStatus | None:
        _, out = self.control_command(
            run,
            flower.ls_argv(
                bin_dir=settings.FLOWER_BIN_DIR,
                flower_run_id=run.flower_run_id,
                connection=run.federation_name or "production",
            ),
            purpose="ls",
            log=False,
            timeout=60,
        )
        return flower.parse_ls_json("\n".join(out), flower_run_id=run.flower_run_id)

    # ------------------------------------------------------------------ stopping
    def handle_stop_requests(self) -> bool:
        did = False
        for run in selectors.runs_stop_requested(supervisor_id=self.id):
            if services.run_mark_stopping(run_id=run.pk):
                self._stop_run(run)
                did = True
        self._stop_run_escalate()
        for session in selectors.sessions_stop_requested(supervisor_id=self.id):
            did |= self._stop_session(session)
        return did

    def _stop_run(self, run: FederatedRun) -> None:
        run_key = str(run.pk)
        if self._runs_awaiting_superlink.pop(run_key, None) is not None:
            services.run_mark_ended(
                run_id=run.pk,
                status=RunStatus.STOPPED,
                detail="stopped before `flwr run` was started (the SuperLink was not accepting connections yet)",
            )
            return
        child = self._run_children.get(run_key)
        self._run_stop_sent[run_key] = time.monotonic()
        if run.flower_run_id:
            # Through Flower's own control path first, off the main loop.
            threading.Thread(target=self._flwr_stop, args=(run.pk,), name=f"flwr-stop-{run.pk}", daemon=True).start()
        elif child is not None and child.alive:
            child.term_sent_at = time.monotonic()
            procs.signal_group(child.pid, signal.SIGTERM)

    def flwr_stop(self, run: FederatedRun) -> None:
        """Stop a run through Flower's own control path; its output goes to the run's log."""
        argv = flower.stop_argv(
            bin_dir=settings.FLOWER_BIN_DIR,
            flower_run_id=run.flower_run_id,
            connection=run.federation_name or "production",
        )
        self.control_command(run, argv, purpose="stop", log=True)

    def _flwr_stop(self, run_id: Any) -> None:
        try:
            self.flwr_stop(FederatedRun.objects.select_related("coordinator_session").get(pk=run_id))
        finally:
            connection.close()

    def _stop_run_escalate(self) -> None:
        now = time.monotonic()
        for run_key, sent in list(self._run_stop_sent.items()):
            child = self._run_children.get(run_key)
            if child is not None and child.alive and child.term_sent_at is None and now - sent > RUN_STOP_GRACE:
                child.term_sent_at = now
                procs.signal_group(child.pid, signal.SIGTERM)

    def _stop_session(self, session: NodeSession) -> bool:
        key = str(session.pk)
        child = self._session_children.get(key)
        if session.kind == SessionKind.SUPERLINK:
            # SIGTERM to a SuperLink with a run's log stream open takes about a minute:
            # stop the run first, then the SuperLink.
            live_run = FederatedRun.objects.filter(
                coordinator_session=session, status__in=("requested", "starting", "running", "stopping")
            ).first()
            if live_run is not None:
                deadline = self._deferred_superlink_stop.setdefault(key, time.monotonic() + SUPERLINK_STOP_WAIT_FOR_RUN)
                if live_run.stop_requested_at is None:
                    services.run_request_stop(project=live_run.project)
                if time.monotonic() < deadline:
                    return False
        if not services.session_mark_stopping(session_id=session.pk):
            return False
        if child is not None and child.alive:
            child.term_sent_at = time.monotonic()
            procs.signal_group(child.pid, signal.SIGTERM)
        else:
            services.session_mark_ended(
                session_id=session.pk, exit_code=None, signal=None, stop_requested=True, detail="no process"
            )
        return True

    def escalate(self) -> bool:
        now = time.monotonic()
        did = False
        for child in self._live_children():
            if (
                child.term_sent_at
                and not child.kill_sent_at
                and now - child.term_sent_at > settings.STOP_TIMEOUT_SECONDS
            ):
                child.kill_sent_at = now
                procs.signal_group(child.pid, signal.SIGKILL)
                owner = child.context.get("owner")
                if owner is not None:
                    self._system(
                        owner,
                        child.context["source"],
                        f"[fedml] no exit {settings.STOP_TIMEOUT_SECONDS:g}s after SIGTERM: sent SIGKILL",
                    )
                did = True
        return did

    # ------------------------------------------------------------------ reconciliation
    def reconcile(self) -> None:
        """Make rows left live by a dead supervisor tell the truth, and leave no orphan."""
        for run in selectors.orphaned_runs(project_ids=self.project_ids):
            self._reconcile_run(run)
        for session in selectors.orphaned_sessions(node_ids=self.node_ids):
            self._reconcile_session(session)
        services.enrollment_release_dead(
            alive_supervisor_ids=set(selectors.supervisors_alive().values_list("id", flat=True))
        )

    def _dead_owner_is_local(self, supervisor_id: Any) -> bool:
        beat = selectors.supervisor_heartbeat_get(supervisor_id=supervisor_id) if supervisor_id else None
        return beat is None or beat.hostname == self.hostname

    def _reconcile_run(self, run: FederatedRun) -> None:
        if not self._dead_owner_is_local(run.supervisor_id):
            return
        identity = run.config.get("process") or {}
        notes = [f"supervisor {run.supervisor_id} died while the run was {run.status}"]
        if run.pid is None and not run.flower_run_id:
            # Claimed but never spawned (it was waiting for its SuperLink): nothing to stop.
            notes.append("`flwr run` had not been started")
            flower.set_current_run_id(settings.FLOWER_APP_DIR, "", only_if=str(run.pk))
            services.run_mark_ended(run_id=run.pk, status=RunStatus.FAILED, detail="; ".join(notes))
            return
        superlink_alive = bool(
            run.coordinator_session
            and procs.identity_alive(run.coordinator_session.runtime_config.get("process") or {})
        )
        flower_result: flower.FlowerRunStatus | None = None
        if run.flower_run_id and superlink_alive:
            # Reach Flower while its SuperLink is still up: stop the run, then read what it says.
            self.writer.open(Owner("run", run.pk), None)
            self.flwr_stop(run)
            flower_result = self.flower_status(run)
            self.writer.close_owner(Owner("run", run.pk))
        if identity and procs.terminate_orphan_group(identity, timeout=settings.STOP_TIMEOUT_SECONDS):
            notes.append(f"FedML terminated the orphaned `flwr run` (pid {identity.get('pid')}) on restart")
        if flower_result is not None and flower_result.finished:
            status, said = _outcome(flower_result)
            notes.append(said)
        else:
            status = RunStatus.FAILED
            notes.append(
                "Flower's outcome could not be read (SuperLink gone)"
                if not superlink_alive
                else "Flower did not report the run finished"
            )
        flower.set_current_run_id(settings.FLOWER_APP_DIR, "", only_if=str(run.pk))
        services.run_mark_ended(run_id=run.pk, status=status, detail="; ".join(notes))

    def _reconcile_session(self, session: NodeSession) -> None:
        if not self._dead_owner_is_local(session.supervisor_id):
            return
        identity = session.runtime_config.get("process") or {}
        if identity and procs.terminate_orphan_group(identity, timeout=settings.STOP_TIMEOUT_SECONDS):
            detail = (
                f"supervisor {session.supervisor_id} died; FedML terminated the orphaned process group "
                f"(pid {identity.get('pid')}) on restart"
            )
        else:
            detail = f"supervisor {session.supervisor_id} died; the process (pid {session.pid}) was already gone"
        services.session_mark_lost(session_id=session.pk, detail=detail)


Child = procs.Child


def _listening(superlink: NodeSession | None) -> bool:
    """Whether the SuperLink accepts connections yet (it takes a few seconds after spawning)."""
    cfg = superlink.runtime_config if superlink else {}
    try:
        with socket.create_connection((_connect_host(cfg.get("host", "127.0.0.1")), cfg.get("port", 0)), timeout=0.2):
            return True
    except OSError:
        return False


def _connection_home(home: Path, superlink: NodeSession | None, connection_name: str) -> Path:
    """A FLWR_HOME whose config.toml names the SuperLink connection (TLS from the session's certificates)."""
    cfg = superlink.runtime_config if superlink else {}
    certs = cfg.get("certificates") or {}
    flower.write_cli_config(
        flwr_home=home,
        connection=connection_name or "production",
        address=f"{_connect_host(cfg.get('host', '127.0.0.1'))}:{cfg.get('port', 9191)}",
        insecure=cfg.get("insecure", True),
        root_certificates=Path(certs["ca_cert"]) if certs else None,
    )
    return home


def _outcome(result: flower.FlowerRunStatus) -> tuple[str, str]:
    """Flower's finished:<sub-status> as FedML's run status, and what Flower said."""
    status = {"completed": RunStatus.COMPLETED, "stopped": RunStatus.STOPPED}.get(result.sub_status, RunStatus.FAILED)
    said = f"Flower: finished:{result.sub_status}" + (f" ({result.details})" if result.details else "")
    return status, said


def _kill(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def which_flower() -> str | None:
    return shutil.which("flower-superlink")
