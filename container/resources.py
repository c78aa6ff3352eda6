"""What the container may use, not what the host has: CPUs by affinity and cgroup quota.

gunicorn-based model servers that size their workers by ``os.cpu_count()`` start one model
copy per host CPU inside a container limited to two, and users file the OOM kills. Every
"how many CPUs" default of the image (serving workers, training threads, ``SM_NUM_CPUS``)
comes from here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs the cgroup quota allows (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None when unlimited."""
    try:
        v2 = root / "cpu.max"
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.exists():
            quota_us = int(v1.read_text())
            return None if quota_us <= 0 else quota_us / int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):  # unreadable or odd: no limit we can tell
        return None
    return None


def available_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


# --------------------------------------------------------------------------- memory
# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit number, not "max".
_V1_UNLIMITED = 1 << 60


def cgroup_memory_limit(root: Path = CGROUP) -> int | None:
    """Bytes the cgroup allows (v2 ``memory.max``, v1 ``memory.limit_in_bytes``); None when unlimited."""
    try:
        v2 = root / "memory.max"
        if v2.exists():
            raw = v2.read_text().strip()
            return None if raw == "max" else int(raw)
        v1 = root / "memory" / "memory.limit_in_bytes"
        if v1.exists():
            value = int(v1.read_text().strip())
            return None if value >= _V1_UNLIMITED else value
    except (OSError, ValueError):  # unreadable or odd: no limit we can tell
        return None
    return None


def directory_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed); 0 when it does not exist."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += info.st_size
    return total


def workers_that_fit(limit: int, per_worker: int, reserve: int) -> int:
    """How many workers of ``per_worker`` bytes fit in ``limit`` once ``reserve`` is set aside."""
    return max(0, (limit - reserve) // max(1, per_worker))
