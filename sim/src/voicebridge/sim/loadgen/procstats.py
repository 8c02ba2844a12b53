"""CPU and memory of the service processes (psutil, /proc) and a description of the machine, so a
figure is read against the hardware and the other load it was measured on."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path
from typing import Any


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = t.user + t.system
    return out


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), to tell other load from ours."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def own_cpu_seconds(service_pids: dict[str, int]) -> float:
    """This process and its children but the services (i.e. the emulator): the load generator's CPU."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        if child.pid in service_pids.values():
            continue
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def rss_bytes(pids: dict[str, int]) -> dict[str, int]:
    import psutil

    return {name: psutil.Process(pid).memory_info().rss for name, pid in pids.items()}


def peak_rss_bytes(pids: dict[str, int]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            out[name] = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
        except (OSError, AttributeError):
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        model = found.group(1) if found else ""
    mem = None
    with contextlib.suppress(OSError, AttributeError):
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024  # type: ignore[union-attr]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
