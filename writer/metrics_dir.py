"""The supervisor's directory of multiprocess metric files: created per run, removed after, and reclaimed
when a supervisor was killed before it could remove its own.

Each directory holds a lock file that its supervisor keeps locked (flock)
while it runs; the kernel drops the lock when the process dies, however it
dies. A directory whose lock can be taken belongs to nobody and is removed.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import shutil
import tempfile
import time

log = logging.getLogger("writer.supervisor")

PREFIX = "ccx-writer-metrics-"
LOCK_FILE = ".owner.lock"
UNLOCKED_GRACE_S = 3600  # a directory without a lock file (older version, or being created) is left this long


def remove_abandoned(parent: str | None = None) -> list[str]:
    """Remove metric directories under ``parent`` (the temporary directory) whose supervisor is gone."""
    removed = []
    for path in glob.glob(os.path.join(parent or tempfile.gettempdir(), PREFIX + "*")):
        lock_path = os.path.join(path, LOCK_FILE)
        try:
            descriptor = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            try:
                if time.time() - os.stat(path).st_mtime < UNLOCKED_GRACE_S:
                    continue
            except OSError:
                continue
        except OSError:
            continue  # another user's, or not ours to judge
        else:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its supervisor runs
            finally:
                os.close(descriptor)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d metrics directories left by supervisors that were killed", len(removed))
    return removed


class MetricsDirectory:
    """A fresh directory, locked by this process until ``remove``."""

    def __init__(self) -> None:
        remove_abandoned()
        self.path = tempfile.mkdtemp(prefix=PREFIX)
        self._lock = os.open(os.path.join(self.path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
