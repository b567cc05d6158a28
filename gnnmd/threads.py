"""How many CPU threads torch uses: a policy that does not collapse when the machine is shared.

torch's OpenMP workers spin while they wait for work. On a machine whose cores
are partly taken by other processes, two spinning threads on two cores slow a
small simulation step down many times (measured: chignolin × 1, 2 cores, one
busy process: 82.5 ms/step with 2 threads, 5.7 ms with 1; idle: 4.6 and 5.2 ms;
benchmarks/RESULTS.md, ``benchmarks/threads_under_load.sh``). ``auto`` therefore
takes the CPUs this process may run on minus the ones the recent load average says
are busy, and at least one.
"""

from __future__ import annotations

import os

import torch


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cpus() -> float:
    """The 1-minute load average: how many CPUs other work kept busy lately (0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def choose_threads(request: str | int) -> tuple[int, str]:
    """(threads, how they were chosen) for ``--threads``: a positive count, or ``auto``."""
    if str(request) != "auto":
        try:
            count = int(request)
        except ValueError:
            raise ValueError(f"--threads must be a positive integer or 'auto', got {request!r}") from None
        if count < 1:
            raise ValueError(f"--threads must be at least 1, got {count}")
        return count, "requested"
    cpus, load = available_cpus(), busy_cpus()
    count = max(1, min(cpus, cpus - int(round(load))))
    return count, f"auto: {cpus} CPU(s), 1-minute load {load:.2f}"


def apply_threads(request: str | int) -> dict:
    """Set torch's intra-op thread count by the policy; returns what to record (threads, policy)."""
    count, policy = choose_threads(request)
    torch.set_num_threads(count)
    return {"threads": count, "thread_policy": policy}
