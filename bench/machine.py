"""What the machine is and what else ran on it while a benchmark ran."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any


def describe() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), "")
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def others(own_pids: set[int] | None = None) -> dict[str, Any]:
    """Load average and the busy processes that are not this benchmark's."""
    own = set(own_pids or ()) | {os.getpid()}
    busy = []
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()[1:]
        for line in out:
            pid, ppid, pcpu, args = line.split(None, 3)
            if int(pid) in own or int(ppid) in own or float(pcpu) < 5:
                continue
            busy.append({"pid": int(pid), "pcpu": float(pcpu), "cmd": args[:120]})
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return {"loadavg": os.getloadavg(), "busy_processes": busy[:10]}
