"""The benchmark row every engine reports (ns/day, with provenance), and its versioned JSON document.

One adapter per engine fills :class:`BenchResult`: :func:`gnnmd.sim.benchmark.measure` (the
replica runner, also on the IPU path) and :func:`gnnmd.openmm.benchmark.measure_openmm`.
Timed regions are bracketed by :func:`synchronize` and read from a monotonic clock.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

SCHEMA = "gnnmd-bench"
SCHEMA_VERSION = 3  # 2: rows record the kernel implementation that ran and the threads; 3: the noise


@dataclass
class BenchResult:
    """One benchmark row; every dimensional key carries its unit."""

    system: str
    beads: int
    replicas: int
    steps: int
    warmup_steps: int
    dt_fs: float
    backend: str
    device: str
    dtype: str
    engine: str
    model: str
    model_trained: bool
    ns_per_day: float
    ns_per_day_per_replica: float
    steps_per_second: float
    ms_per_step: float
    peak_memory_mb: float
    peak_memory_kind: str
    final_mean_temperature_k: float
    #: Verlet skin of the replica runner, nm (0: all pairs filtered every step; None: not the replica runner).
    skin_nm: float | None = None
    #: Per-replica neighbour-list builds during the timed steps (replica runner).
    neighbor_list_builds: int | None = None
    #: Whether each step replayed CUDA graphs.
    cuda_graph: bool = False
    #: OpenMM engine only: how OpenMM calls the model, "torchforce" or "pythonforce".
    route: str | None = None
    #: ns/day of this row over ns/day of the same case with 1 replica (= R sequential single-replica runs).
    speedup_vs_single_replica: float | None = None
    #: What computed the interactions: torch, torch-chunked, native-cpu, triton-cuda (see gnnmd.kernels).
    implementation: str | None = None
    #: torch's CPU threads during the run, and how they were chosen (gnnmd.threads).
    threads: int | None = None
    thread_policy: str | None = None
    #: The thermostat noise and what drew it, e.g. "philox4x32-10 (native-cpu)" (replica runner).
    noise: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPUs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA allocator stats; on Linux CPUs the RSS high-water mark)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory since :func:`reset_peak_memory`, MiB, and what was measured."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                # Peak resident set since the last reset_peak_memory: the runner's state, torch included.
                return float(line.split()[1]) / 1024.0, "process_peak_rss_since_reset"
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux: the whole process, torch libraries included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "process_peak_rss"


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def provenance() -> dict:
    """Where and with what a benchmark ran: host, UTC time, versions, CPU/GPU, git SHA, allocator."""
    import gnnmd

    info = {
        "host": socket.gethostname(),
        "utc_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gnnmd": gnnmd.__version__,
        "git_sha": _git_sha(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }
    try:
        import openmm

        info["openmm"] = openmm.__version__
    except ImportError:
        info["openmm"] = None
    return info


def report(results: list[BenchResult]) -> dict:
    """The versioned JSON document for ``results``."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "system_info": provenance(),
        "benchmarks": [r.to_dict() for r in results],
    }
