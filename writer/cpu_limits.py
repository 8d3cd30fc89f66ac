"""How many CPUs this process may really use: the default number of workers.

``os.cpu_count()`` is the host's count; in a pod limited to 500m CPU on a
16-CPU node it would start 16 workers (and their memory). The usable count is
the smallest of the CPU affinity set and the cgroup CPU quota (v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the smallest of the process's
cgroup and all its parents), rounded up, at least 1.
"""

from __future__ import annotations

import enum
import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def quota_from_cgroup_v2(text: str) -> float | None:
    """CPUs allowed by a v2 ``cpu.max`` line ("max 100000" or "50000 100000"); None when unlimited."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def quota_from_cgroup_v1(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by v1 cfs quota and period (quota -1: unlimited)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroup_path(proc_self_cgroup: str, v1_controller: str | None) -> tuple[str, str] | None:
    """(hierarchy directory name, path) of this process: the v2 line ("0::/path") when v1_controller is
    None, else the v1 line whose controllers include it ("4:cpu,cpuacct:/path")."""
    for line in proc_self_cgroup.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if v1_controller is None and fields[0] == "0" and fields[1] == "":
            return "", fields[2]
        if v1_controller is not None and v1_controller in fields[1].split(","):
            return fields[1], fields[2]
    return None


def _up_to(top: Path, path: str) -> list[Path]:
    """top/path and each of its parents up to top itself (a limit anywhere above applies too)."""
    relative = Path(path.strip().lstrip("/"))
    chain = [top / relative, *(top / parent for parent in relative.parents)]
    return list(dict.fromkeys(chain))


def _smallest(quotas: list[float | None]) -> float | None:
    limited = [q for q in quotas if q is not None]
    return min(limited) if limited else None


def _quota_v2(root: Path, proc_self_cgroup: str) -> tuple[bool, float | None]:
    """(found a cpu.max at all, smallest quota from this process's cgroup up to the root)."""
    own = _own_cgroup_path(proc_self_cgroup, None)
    files = [d / "cpu.max" for d in _up_to(root, own[1] if own else "/")]
    found = [f.read_text() for f in files if f.is_file()]
    return bool(found), _smallest([quota_from_cgroup_v2(text) for text in found])


def _quota_v1(root: Path, proc_self_cgroup: str) -> float | None:
    """The smallest cfs quota from this process's cgroup up to the top of the v1 cpu hierarchy."""
    own = _own_cgroup_path(proc_self_cgroup, "cpu")
    path = own[1] if own else "/"
    mounts = ([own[0]] if own else []) + ["cpu,cpuacct", "cpuacct,cpu", "cpu"]
    for mount in dict.fromkeys(mounts):
        top = root / mount
        if not top.is_dir():
            continue
        quotas = []
        for directory in _up_to(top, path):
            quota, period = directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"
            if quota.is_file() and period.is_file():
                quotas.append(quota_from_cgroup_v1(quota.read_text(), period.read_text()))
        return _smallest(quotas)
    return None


def cgroup_quota(root: Path = CGROUP_ROOT, proc_self_cgroup: str | None = None) -> float | None:
    """The CPU quota that applies to this process (its cgroup and every parent, v2, else v1), or None.

    A container runtime may mount only the container's own cgroup (the path in /proc/self/cgroup then
    does not exist below the mount): the walk up reaches the mount's top, which is that cgroup.
    """
    if proc_self_cgroup is None:
        try:
            proc_self_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_self_cgroup = ""
    try:
        found, quota = _quota_v2(root, proc_self_cgroup)
        if found:
            return quota
        return _quota_v1(root, proc_self_cgroup)
    except OSError:
        return None


def affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


class _Own(enum.Enum):
    """Default of usable_cpus's arguments: this process's own value (None is a value: unknown)."""

    VALUE = "own"


_OWN = _Own.VALUE


def usable_cpus(quota: float | None | _Own = _OWN, affinity: int | None | _Own = _OWN,
                host: int | None | _Own = _OWN) -> int:
    """The default worker count: min(affinity, ceil(quota)), falling back to the host count, at least 1.

    Arguments default to this process's own values; tests pass them in.
    """
    if quota is _OWN:
        quota = cgroup_quota()
    if affinity is _OWN:
        affinity = affinity_count()
    if host is _OWN:
        host = os.cpu_count()
    candidates = [n for n in (affinity, math.ceil(quota) if quota else None) if n]
    count = min(candidates) if candidates else (host or 1)
    return max(1, count)
