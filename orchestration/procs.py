"""Child processes of the supervisor: spawn in a new process group, read pipes, signal groups.

Django-free (a leaf that receives callables), so it can be tested with a fake child alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from orchestration.flower import strip_ansi
from orchestration.private_files import CHILD_UMASK

MAX_LINE = 64 * 1024  # a longer line is split; a child printing without newlines can't grow memory

ContextT = TypeVar("ContextT")


@dataclass
class Child(Generic[ContextT]):
    """A started process. `context` is whatever the spawner needs to know about it (typed by it).

    `exited` is set when it has been reaped, `io_done` when both its pipes reached EOF.
    """

    pid: int
    argv: list[str]
    popen: subprocess.Popen[bytes]
    label: str
    context: ContextT
    started_mono: float = field(default_factory=time.monotonic)
    exit_code: int | None = None
    exit_signal: int | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    io_done: threading.Event = field(default_factory=threading.Event)
    term_sent_at: float | None = None
    kill_sent_at: float | None = None
    stdout_fd: int = -1
    stderr_fd: int = -1

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    def describe_exit(self) -> str:
        if self.exit_signal is not None:
            try:
                name = signal.Signals(self.exit_signal).name
            except ValueError:
                name = str(self.exit_signal)
            return f"died with signal {name}"
        return f"exited with code {self.exit_code}"


LineCallback = Callable[[Child[Any], str, datetime, str], None]


def set_child_subreaper() -> bool:
    """Orphaned grandchildren (Flower's app processes) are re-parented to us, and we reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def process_identity(pid: int) -> dict[str, Any]:
    """pid plus kernel start time, so a recycled pid is never mistaken for our child."""
    return {"pid": pid, "start_ticks": _start_ticks(pid), "hostname": socket.gethostname()}


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def identity_alive(identity: dict[str, Any]) -> bool:
    pid = identity.get("pid")
    if not isinstance(pid, int) or identity.get("hostname") not in (None, socket.gethostname()):
        return False
    state = _state(pid)
    if state is None or state == "Z":
        return False
    return identity.get("start_ticks") is None or _start_ticks(pid) == identity.get("start_ticks")


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def terminate_orphan_group(identity: dict[str, Any], *, timeout: float) -> bool:
    """SIGTERM a group we can no longer wait for (its supervisor died), SIGKILL after timeout."""
    pid = identity["pid"]
    if not identity_alive(identity):
        signal_group(pid, signal.SIGKILL)  # leftovers of the group, if any
        return False
    # Flower's SuperExec runs in a session of its own: collect the whole tree first, while
    # the parent links still say who belongs to whom.
    tree = descendants(pid)
    signal_group(pid, signal.SIGTERM)
    for other in tree:
        _signal_pid_and_group(other, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and identity_alive(identity):
        time.sleep(0.1)
    signal_group(pid, signal.SIGKILL)
    for other in tree:
        _signal_pid_and_group(other, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and identity_alive(identity):
        time.sleep(0.05)
    return True


def _signal_pid_and_group(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)
    # Only a group this pid leads: never a group we merely share.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
    except OSError:
        pass


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` in the parent tree (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class PipeReader(threading.Thread):
    """One thread reads every child's stdout and stderr and hands out whole lines in arrival order."""

    def __init__(self, on_line: LineCallback, on_eof: Callable[[Child[Any]], None] | None = None) -> None:
        super().__init__(name="pipe-reader", daemon=True)
        self._poll = select.poll()
        self._on_line = on_line
        self._on_eof = on_eof
        # Pipes handed over by other threads wait in `_pending` (guarded by `_lock`); everything
        # else below is this thread's alone.
        self._lock = threading.Lock()
        self._pending: list[tuple[Child[Any], int, str]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._poll.register(self._wake_r, select.POLLIN)
        self._streams: dict[int, tuple[Child[Any], str]] = {}  # fd -> (child, "stdout" | "stderr")
        self._open: dict[int, int] = {}  # pid -> open pipes
        self._stopping = False  # set once by stop(); a plain flag read by this thread

    def add(self, child: Child[Any]) -> None:
        with self._lock:
            self._pending.append((child, child.stdout_fd, "stdout"))
            self._pending.append((child, child.stderr_fd, "stderr"))
        os.write(self._wake_w, b"x")

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")

    def run(self) -> None:
        buffers: dict[int, bytes] = {}
        while True:
            with self._lock:
                for child, fd, stream in self._pending:
                    os.set_blocking(fd, False)
                    self._poll.register(fd, select.POLLIN)
                    self._streams[fd] = (child, stream)
                    self._open[child.pid] = self._open.get(child.pid, 0) + 1
                    buffers[fd] = b""
                self._pending.clear()
            if self._stopping and not self._open:
                return
            for fd, _events in self._poll.poll(500):
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                child, stream = self._streams[fd]
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    chunk = b""
                now = datetime.now(UTC)
                if chunk:
                    data = buffers[fd] + chunk
                    *lines, rest = data.split(b"\n")
                    while len(rest) > MAX_LINE:
                        lines.append(rest[:MAX_LINE])
                        rest = rest[MAX_LINE:]
                    buffers[fd] = rest
                    for raw in lines:
                        self._on_line(child, stream, now, strip_ansi(raw.decode("utf-8", "replace")))
                    continue
                # EOF (or hang-up): flush a last line without newline, close, and tell when both pipes are done.
                if buffers.get(fd):
                    self._on_line(child, stream, now, strip_ansi(buffers[fd].decode("utf-8", "replace")))
                buffers.pop(fd, None)
                self._poll.unregister(fd)
                del self._streams[fd]
                os.close(fd)
                self._open[child.pid] -= 1
                if self._open[child.pid] == 0:
                    del self._open[child.pid]
                    child.io_done.set()
                    if self._on_eof is not None:
                        self._on_eof(child)


def spawn(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    label: str,
    context: ContextT,
) -> Child[ContextT]:
    """Start a child in its own session/process group, argv only, no shell, no stdin; what it
    creates is its user's only (CHILD_UMASK)."""
    popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(cwd),
        start_new_session=True,
        close_fds=True,
        umask=CHILD_UMASK,
    )
    # We read raw fds in the reader thread and close them at EOF. Take our own copies and
    # close Popen's file objects now: otherwise their finalizers would close the same fd
    # numbers later, by then reused by another child's pipe.
    assert popen.stdout is not None and popen.stderr is not None
    stdout_fd, stderr_fd = os.dup(popen.stdout.fileno()), os.dup(popen.stderr.fileno())
    popen.stdout.close()
    popen.stderr.close()
    return Child(
        pid=popen.pid,
        argv=argv,
        popen=popen,
        label=label,
        context=context,
        stdout_fd=stdout_fd,
        stderr_fd=stderr_fd,
    )


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def flower_orphans(*, parent: int, known: set[int]) -> list[int]:
    """Flower processes re-parented to us (we are their subreaper) that we did not spawn.

    flower-superexec runs in its own session, so a SuperLink's `flwr-serverapp` survives the
    SuperLink's process group; once its parent dies it lands here and must go too.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in known:
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[1]) != parent or fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if b"flwr" in cmdline or b"flower-" in cmdline:
            found.append(int(entry.name))
    return found


def reap_all(children: dict[int, Child[ContextT]]) -> list[Child[ContextT]]:
    """Reap every exited child (ours and adopted orphans) without blocking; mark ours `exited`."""
    ended: list[Child[ContextT]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        child = children.get(pid)
        if child is None:
            continue  # an adopted orphan (subreaper): reaped, nothing to record
        child.exit_code, child.exit_signal = decode_wait_status(status)
        # Keep Popen from waiting on a pid that no longer exists.
        child.popen.returncode = child.exit_code if child.exit_signal is None else -child.exit_signal
        child.exited.set()
        ended.append(child)
    return ended


def port_bindable(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now. Without SO_REUSEADDR, so a port held by any
    socket (another program's listener, an outgoing connection's local port) counts as taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
