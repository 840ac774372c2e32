"""What the code should know about the cell's size. Standard library only.

Inside a container, os.cpu_count() and /proc show the host; numeric libraries then start one
thread per host core in a cell that may have one CPU. Their thread-count variables are set from
the cell's CPU quota (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us) instead.
"""

from __future__ import annotations

import math
import os

CPU_MAX = "/sys/fs/cgroup/cpu.max"  # v2: "QUOTA PERIOD", QUOTA may be "max"
CFS_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"  # v1: -1 when there is none
CFS_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
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


def cpu_limit() -> int:
    """The CPUs the cell may use: ceil(quota / period), at least 1; else the CPUs we may run on."""
    quota = cpu_quota()
    if quota is not None:
        return max(1, math.ceil(quota))
    return len(os.sched_getaffinity(0)) or os.cpu_count() or 1


def cpu_quota() -> float | None:
    """quota / period from the cgroup (v2, else v1); None when there is no quota."""
    try:
        quota, period = read(CPU_MAX).split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(read(CFS_QUOTA))
        return None if quota_us <= 0 else quota_us / int(read(CFS_PERIOD))
    except (OSError, ValueError):
        return None


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def thread_env() -> dict[str, str]:
    threads = str(cpu_limit())
    return dict.fromkeys(THREAD_VARIABLES, threads)
