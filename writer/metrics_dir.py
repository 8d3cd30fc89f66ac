"""The supervisor's directory of multiprocess metric files: created per run, removed after, and reclaimed
when a supervisor was killed before it could remove its own.

Each directory holds a lock file that its supervisor keeps locked (flock)
while it runs; the kernel drops the lock when the process dies, however it
dies. A directory whose lock can be taken belongs to nobody and is removed.

A directory gets its name under ``PREFIX`` only once its lock is held: it is
made and locked under a staging name, then renamed. So a directory under
``PREFIX`` without a lock file was not made by this version (an older one
made none) and its supervisor may still run: it is left alone, never judged
by its age.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import shutil
import tempfile
import uuid

log = logging.getLogger("writer.supervisor")

PREFIX = "ccx-writer-metrics-"
STAGING_PREFIX = ".ccx-writer-metrics-new-"  # outside PREFIX: a sweep never sees a directory not yet locked
LOCK_FILE = ".owner.lock"


def _remove_if_unlocked(path: str) -> bool:
    try:
        descriptor = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file (an older version's, its owner may run), or another user's
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its supervisor runs
        shutil.rmtree(path, ignore_errors=True)  # with the lock held
        return True
    finally:
        os.close(descriptor)


def remove_abandoned(parent: str | None = None) -> list[str]:
    """Remove metric directories under ``parent`` (the temporary directory) whose supervisor is gone."""
    parent = parent or tempfile.gettempdir()
    removed = [path for pattern in (PREFIX, STAGING_PREFIX)
               for path in glob.glob(os.path.join(parent, pattern + "*")) if _remove_if_unlocked(path)]
    if removed:
        log.info("removed %d metrics directories left by supervisors that were killed", len(removed))
    return removed


class MetricsDirectory:
    """A fresh directory, locked by this process until ``remove``."""

    def __init__(self, parent: str | None = None) -> None:
        parent = parent or tempfile.gettempdir()
        remove_abandoned(parent)
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
        self._lock = os.open(os.path.join(staging, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = os.path.join(parent, PREFIX + uuid.uuid4().hex)
        os.rename(staging, self.path)  # the flock follows the open file, not its name

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
