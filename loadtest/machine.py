"""What a benchmark ran on, recorded beside its figures: this machine is shared, so a
figure without the load average and the CPU time spent on it cannot be compared.

:class:`MachineRecord` is started before a run and finished after it; it prints the
``uptime`` line at both ends and keeps the CPU count, the load averages and the CPU time
of this process, its waited-for children and any other process it is told to watch
(a worker started with ``Popen`` is not waited for until it stops).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def uptime() -> str:
    """The ``uptime`` line (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (default: this one) so far, from
    ``/proc/PID/stat`` (fields 14 and 15, in clock ticks)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(marker: str) -> int:
    """The process whose command line holds ``marker`` (e.g. a worker's unique app id)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:  # exited meanwhile, or not ours to read
                continue
    raise LookupError(f"no process with {marker!r} in its command line")


class MachineRecord:
    """CPU count, load averages before/after and CPU time of a run."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self._say = say
        self.cpus = os.cpu_count() or 1
        self.load_before = os.getloadavg()
        self.cpu_before = cpu_seconds()
        self.wall_before = time.perf_counter()
        self._say(f"uptime before: {uptime()}")

    def finish(self, **extra_cpu_s: float) -> dict[str, Any]:
        """The record as a JSON-ready dict; ``extra_cpu_s`` adds CPU seconds measured on
        other processes (e.g. ``worker_cpu_s``)."""
        load_after = os.getloadavg()
        self._say(f"uptime after:  {uptime()}")
        return {
            "cpu_count": self.cpus,
            "load_avg_before": [round(x, 2) for x in self.load_before],
            "load_avg_after": [round(x, 2) for x in load_after],
            "wall_s": round(time.perf_counter() - self.wall_before, 1),
            "cpu_s": round(cpu_seconds() - self.cpu_before, 1),
            **{name: round(value, 1) for name, value in extra_cpu_s.items()},
        }
