"""What Linux's /proc says of processes and of the machine: peak memory and CPU time."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def peak_mib(status: str) -> float | None:
    """The peak resident memory (VmHWM) in the text of a /proc/<pid>/status, in MiB."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy since boot (all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / TICKS


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds (user and system) process ``pid`` has used, None without one."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS
