"""This node's capacity, detected (or capped by the operator): CPUs, memory and GPUs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from protocol.capacity import Capacity
from protocol.spec import parse_size

log = logging.getLogger(__name__)


def detect_capacity(cpus: float | None = None, memory: str | None = None,
                    gpus: int | None = None) -> Capacity:
    """The node's capacity; an operator's figure replaces the detected one (it may only be lower
    than what the machine has: Docker refuses a CPU quota above the host's CPUs)."""
    models = _gpu_models()
    return Capacity(
        cpus=min(cpus, _cpus()) if cpus is not None else _cpus(),
        memory=parse_size(memory) if memory is not None else _memory(),
        gpus=gpus if gpus is not None else len(models),
        gpu_models=models,
    )


@cache
def _cpus() -> float:
    """CPUs usable by this process: the affinity mask, bounded by a cgroup v2 CPU quota."""
    count = float(len(os.sched_getaffinity(0)))
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            count = min(count, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return count


@cache
def _memory() -> int:
    """Physical memory, bounded by a cgroup v2 memory limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    except (OSError, ValueError):
        pass
    return int(total)


@cache
def _gpu_models() -> tuple[str, ...]:
    """One entry per NVIDIA GPU that `nvidia-smi` reports; none without the tool."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return ()
    try:
        result = subprocess.run([nvidia_smi, "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed, advertising no GPU: %s", exc)
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())
