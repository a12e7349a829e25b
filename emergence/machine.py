"""Where a result was computed. A leaf module: training records it too, so its code version stays small.

Trained weights depend on the machine: another CPU type rounds differently from the first step, and a ladder
run on its loss plateau can leave it at another time (docs/benchmarks.md, "Across CPU types").
"""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    """System, architecture, CPU model (from /proc/cpuinfo where there is one) and CPU count."""
    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"system": platform.system(), "arch": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count()}
