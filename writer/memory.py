"""Peak resident memory of a process, as /proc reports it."""

from __future__ import annotations

import resource


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """Peak RSS of a process (VmHWM, KiB), or None where /proc cannot tell. VmHWM belongs to the address
    space and is reset by exec, unlike ru_maxrss, which a child started from a large parent inherits
    across fork + exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM, or ru_maxrss where there is no /proc."""
    peak = vm_hwm_kib()
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
