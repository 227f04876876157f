"""How many CPU cores this process can keep busy."""

from __future__ import annotations

import math
import os
from pathlib import Path

# A container's CPU quota, as (quota, period) in microseconds: cgroup v2, then v1.
_QUOTA_FILES = (
    ("/sys/fs/cgroup/cpu.max", None),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def _quota() -> float | None:
    """The CPU time the container may use per unit of time (2.0: two cores' worth), or None
    without a limit."""
    for quota_file, period_file in _QUOTA_FILES:
        try:
            if period_file is None:
                quota, period = Path(quota_file).read_text().split()
            else:
                quota, period = Path(quota_file).read_text(), Path(period_file).read_text()
            quota, period = quota.strip(), period.strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    return None


def usable_cores() -> int:
    """The cores this process may run on, fewer if a CPU quota allows less (a container
    on Binder may see a machine's many cores and be allowed one)."""
    # macOS has no affinity: every core counts there.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    quota = _quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))
