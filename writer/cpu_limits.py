"""How many CPUs this process may really use: the default number of workers.

``os.cpu_count()`` is the host's count; in a pod limited to 500m CPU on a
16-CPU node it would start 16 workers (and their memory). The usable count is
the smallest of the CPU affinity set and the cgroup CPU quota (v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up, at least 1.
"""

from __future__ import annotations

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


def _own_cgroup_v2_dir(root: Path, proc_self_cgroup: str) -> Path:
    """The v2 cgroup directory of this process ("0::/path" in /proc/self/cgroup), else the root."""
    for line in proc_self_cgroup.splitlines():
        if line.startswith("0::"):
            candidate = root / line[3:].lstrip("/")
            if (candidate / "cpu.max").is_file():
                return candidate
    return root


def cgroup_quota(root: Path = CGROUP_ROOT, proc_self_cgroup: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup (v2, else v1), or None when there is none."""
    if proc_self_cgroup is None:
        try:
            proc_self_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_self_cgroup = ""
    try:
        v2 = _own_cgroup_v2_dir(root, proc_self_cgroup) / "cpu.max"
        if v2.is_file():
            return quota_from_cgroup_v2(v2.read_text())
        for v1_dir in (root / "cpu,cpuacct", root / "cpu"):
            quota, period = v1_dir / "cpu.cfs_quota_us", v1_dir / "cpu.cfs_period_us"
            if quota.is_file() and period.is_file():
                return quota_from_cgroup_v1(quota.read_text(), period.read_text())
    except OSError:
        return None
    return None


def affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


def usable_cpus(quota: float | None = ..., affinity: int | None = ..., host: int | None = ...) -> int:
    """The default worker count: min(affinity, ceil(quota)), falling back to the host count, at least 1.

    Arguments default to this process's own values; tests pass them in.
    """
    if quota is ...:
        quota = cgroup_quota()
    if affinity is ...:
        affinity = affinity_count()
    if host is ...:
        host = os.cpu_count()
    candidates = [n for n in (affinity, math.ceil(quota) if quota else None) if n]
    count = min(candidates) if candidates else (host or 1)
    return max(1, count)
