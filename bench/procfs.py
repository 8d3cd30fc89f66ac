"""What /proc says about local processes: CPU time, peak RSS, children, who listens on a port.

Only meaningful for processes on this host (and in this PID namespace); every reader returns None
(or nothing) for a process it cannot see, so callers show "-" instead of a wrong figure.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from writer.memory import vm_hwm_kib

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 (state) onwards."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (not of its children)."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main_thread_schedstat(pid: int) -> tuple[float, float] | None:
    """Seconds the process's main thread has run on a CPU, and waited on a run queue for one.

    /proc/PID/schedstat belongs to the thread group leader only (the worker's main thread, which polls,
    parses and writes), not to librdkafka's threads; nanosecond counters, kept by the scheduler."""
    try:
        with open(f"/proc/{pid}/schedstat") as handle:
            run, wait = handle.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(run) / 1e9, int(wait) / 1e9


# Thread classes of a worker: its main thread, librdkafka's threads (named "rdk:..."), any other thread.
THREAD_CLASSES = ("main", "librdkafka", "other")


def thread_cpu_seconds(pid: int) -> dict[str, float] | None:
    """User + system CPU time of a process's live threads by class (``THREAD_CLASSES``)."""
    totals = dict.fromkeys(THREAD_CLASSES, 0.0)
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                text = handle.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        kind = "main" if int(task) == pid else "librdkafka" if name.startswith("rdk:") else "other"
        totals[kind] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return totals


def _boot_time() -> float:
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


BOOT_TIME = _boot_time()


def start_time(pid: int) -> float | None:
    """Wall-clock time the process started (to the clock tick)."""
    fields = _stat_fields(pid)
    return None if fields is None else BOOT_TIME + int(fields[19]) / CLOCK_TICKS


def command_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _children(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/*/children (None where the kernel does not provide it)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return None if os.path.isdir(f"/proc/{pid}") else []
    except OSError:
        return []
    return found


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children, ...)."""
    direct = _children(root)
    if direct is None:
        return _descendants_by_scan(root)
    found, queue = [], list(direct)
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue += _children(pid) or []
    return found


def _descendants_by_scan(root: int) -> list[int]:
    """The same from the parent links of every process (slower; kernels without the children file)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def listening_pid(port: int) -> int | None:
    """The process of this user (or any, as root) listening on a local TCP port, else None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{parts[9]}]")
        except OSError:
            continue
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    return int(entry)
        except OSError:
            continue
    return None


def is_local_host(host: str) -> bool:
    """True for a Unix socket directory, a loopback name or an address this host owns."""
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return False
    for address in addresses:
        if ipaddress.ip_address(address.split("%")[0]).is_loopback:
            return True
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, 0))  # only an address of this host can be bound
                return True
            except OSError:
                continue
    return False


@dataclass
class _Track:
    role: str
    started: float | None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (wall time, CPU seconds)
    peak_rss_kib: int = 0
    # The root's descendants only: (wall time, main thread's run seconds + run-queue wait seconds) and
    # (wall time, CPU seconds per thread class).
    busy: list[tuple[float, float]] = field(default_factory=list)
    threads: list[tuple[float, dict[str, float]]] = field(default_factory=list)


class ProcessSampler:
    """Samples CPU time and VmHWM every ``interval`` s: a root process (role "supervisor"), its
    descendants ("children"; ``assign`` gives them their roles afterwards), and the pids that ``extra()``
    names with their roles (PostgreSQL backends, a local broker). CPU of a role over a window is read
    afterwards with ``cpu_between``."""

    def __init__(self, root_pid: int | None, extra=None, interval: float = 0.1) -> None:
        self.root_pid = root_pid
        self.extra = extra or (lambda: {})
        self.interval = interval
        self.tracks: dict[int, _Track] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _watched(self) -> dict[int, str]:
        pids = dict(self.extra())
        if self.root_pid is not None:
            pids[self.root_pid] = "supervisor"
            for child in descendants(self.root_pid):
                pids[child] = "children"
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, role in self._watched().items():
                cpu, rss = cpu_seconds(pid), vm_hwm_kib(pid)
                if cpu is None:
                    continue
                track = self.tracks.get(pid)
                if track is None:
                    track = self.tracks[pid] = _Track(role, start_time(pid))
                now = time.time()
                track.samples.append((now, cpu))
                track.peak_rss_kib = max(track.peak_rss_kib, rss or 0)
                if role == "children":
                    sched, threads = main_thread_schedstat(pid), thread_cpu_seconds(pid)
                    if sched is not None:
                        track.busy.append((now, sched[0] + sched[1]))
                    if threads is not None:
                        track.threads.append((now, threads))
            self._stop.wait(self.interval)

    def assign(self, roles: dict[int, str], default: str) -> None:
        """Give the root's descendants their roles: ``roles[pid]``, else ``default``."""
        for pid, track in self.tracks.items():
            if track.role == "children":
                track.role = roles.get(pid, default)

    def cpu_between(self, role: str, start: float, end: float) -> float | None:
        """CPU seconds the processes of ``role`` used between two wall-clock times, interpolated between
        the samples around each; None if none was seen."""
        tracks = [t for t in self.tracks.values() if t.role == role]
        if not tracks:
            return None
        return sum(_cpu_at(t, end) - _cpu_at(t, start) for t in tracks)

    def peak_rss(self, role: str) -> dict[int, int]:
        return {pid: t.peak_rss_kib for pid, t in self.tracks.items() if t.role == role}

    def idle_shares(self, role: str, start: float, end: float) -> dict[int, float]:
        """Per process of ``role``: the share of the window its main thread was neither running on a CPU
        nor waiting on a run queue for one (from /proc/PID/schedstat, interpolated at the edges)."""
        shares = {}
        for pid, track in self.tracks.items():
            if track.role == role and track.busy and end > start:
                busy = _value_at(track.busy, track.started, end) - _value_at(track.busy, track.started, start)
                shares[pid] = min(1.0, max(0.0, 1 - busy / (end - start)))
        return shares

    def thread_cpu_between(self, role: str, start: float, end: float) -> dict[str, float] | None:
        """CPU seconds the processes of ``role`` used between two times, by thread class; None if none was seen."""
        tracks = [t for t in self.tracks.values() if t.role == role and t.threads]
        if not tracks:
            return None
        totals = dict.fromkeys(THREAD_CLASSES, 0.0)
        for track in tracks:
            for kind in THREAD_CLASSES:
                series = [(moment, values[kind]) for moment, values in track.threads]
                totals[kind] += _value_at(series, track.started, end) - _value_at(series, track.started, start)
        return totals


def _cpu_at(track: _Track, moment: float) -> float:
    return _value_at(track.samples, track.started, moment)


def _value_at(samples: list[tuple[float, float]], started: float | None, moment: float) -> float:
    """A growing counter (CPU time) at ``moment``, linear between the samples around it (from 0 at the
    process start when it was first seen after ``moment``); the last sample after the last one."""
    if started is not None and started < samples[0][0]:
        samples = [(started, 0.0), *samples]
    if moment <= samples[0][0]:
        return 0.0 if started is not None and started >= moment else samples[0][1]
    for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
        if t0 <= moment <= t1:
            return c0 + (c1 - c0) * (moment - t0) / (t1 - t0) if t1 > t0 else c1
    return samples[-1][1]


def read_cpu(pids: dict[int, str]) -> dict[int, tuple[str, float]]:
    """Each process's role and CPU seconds right now (processes /proc no longer shows are left out)."""
    readings = {}
    for pid, role in pids.items():
        cpu = cpu_seconds(pid)
        if cpu is not None:
            readings[pid] = (role, cpu)
    return readings


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], role: str) -> float | None:
    """CPU seconds the processes of ``role`` used between two ``read_cpu`` readings; None if one of them
    was not read both times (then the figure would be wrong)."""
    pids = {pid for pid, (r, _) in before.items() if r == role} | {pid for pid, (r, _) in after.items() if r == role}
    if not pids or any(pid not in before or pid not in after for pid in pids):
        return None
    return sum(after[pid][1] - before[pid][1] for pid in pids)
