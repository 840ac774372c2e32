"""What the code should know about the cell's size. Standard library only.

Inside a container, os.cpu_count() and /proc show the host; numeric libraries then start one
thread per host core in a cell that may have one CPU. Their thread-count variables are set from
the cell's CPU quota (cgroup v2 cpu.max) instead.
"""

from __future__ import annotations

import math
import os

CPU_MAX = "/sys/fs/cgroup/cpu.max"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "POLARS_MAX_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def cpu_limit(path: str = CPU_MAX) -> int:
    """The CPUs the cell may use: ceil(quota / period), at least 1; else the CPUs we may run on."""
    try:
        with open(path) as f:
            quota, period = f.read().split()
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0)) or os.cpu_count() or 1


def thread_env() -> dict[str, str]:
    threads = str(cpu_limit())
    return dict.fromkeys(THREAD_VARIABLES, threads)
