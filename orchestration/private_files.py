"""FedML's own files, for its user only: directories 0700, files 0600.

Log files, the SuperLink's state, Flower's homes and FedML's data hold runs' output, node
identities and keys; other accounts on the host have no business reading them. Django-free: the
log writer and process spawning use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

# The umask of every process the supervisor starts: what Flower creates (the SuperLink's state.db,
# its FLWR_HOME's contents) is 0600 and its directories 0700, whatever FedML's own umask is.
CHILD_UMASK = 0o077


def private_dirs(path: Path) -> Path:
    """Create `path` and each missing parent 0700. Directories that exist are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            if not directory.is_dir():
                raise
    return path


def open_private_append(path: Path) -> TextIO:
    """Open a log file for appending, created 0600 in a 0700 directory (one an older FedML made 0644
    is narrowed)."""
    private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
