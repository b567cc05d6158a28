"""Throughput measurement of the replica runner (ns/day): its adapter to the bench row.

Warm-up steps run first and are not timed; the timed region is bracketed by
device synchronisation and read from a monotonic clock.
"""

from __future__ import annotations

import time

from gnnmd.engine.bench import BenchResult, peak_memory_mb, reset_peak_memory, synchronize
from gnnmd.nn.backends import implementation_of
from gnnmd.sim.runner import ReplicaRunner
from gnnmd.static.stepper import WARMUP_STEPS
from gnnmd.units import ns_per_day


def measure(runner: ReplicaRunner, steps: int, warmup_steps: int, labels: dict) -> BenchResult:
    """Time ``steps`` steps of ``runner`` after ``warmup_steps`` untimed ones.

    ``labels`` fills the descriptive fields: system, backend, model, model_trained.
    With CUDA graphs, ``warmup_steps`` must cover the eager warm-up and the capture
    (:data:`gnnmd.static.stepper.WARMUP_STEPS` + 1). Raises SimulationError if any
    replica goes non-finite.
    """
    if steps < 1 or warmup_steps < 0:
        raise ValueError(f"need steps >= 1 and warmup_steps >= 0, got {steps} and {warmup_steps}")
    if runner.cuda_graph and warmup_steps < WARMUP_STEPS + 1:
        raise ValueError(f"CUDA graphs need at least {WARMUP_STEPS + 1} warm-up steps (capture is not timed)")
    device = runner.device
    reset_peak_memory(device)
    runner.step(warmup_steps)  # CUDA-graph capture happens here too, never in the timed steps
    synchronize(device)
    builds = runner.neighbor_list_builds()
    start = time.perf_counter()
    runner.step(steps)
    synchronize(device)
    elapsed = time.perf_counter() - start
    builds = runner.neighbor_list_builds() - builds
    runner.check_finite()
    steps_per_second = steps / elapsed
    per_replica = ns_per_day(runner.settings.timestep_fs, steps_per_second)
    peak, kind = peak_memory_mb(device)
    return BenchResult(
        beads=int(runner.batch.ptr[-1]) // runner.num_replicas,
        replicas=runner.num_replicas,
        steps=steps,
        warmup_steps=warmup_steps,
        dt_fs=runner.settings.timestep_fs,
        device=str(device),
        dtype=str(runner.dtype).replace("torch.", ""),
        engine="replica-runner",
        ns_per_day=per_replica * runner.num_replicas,
        ns_per_day_per_replica=per_replica,
        steps_per_second=steps_per_second,
        ms_per_step=1000.0 * elapsed / steps,
        peak_memory_mb=peak,
        peak_memory_kind=kind,
        final_mean_temperature_k=float(runner.temperatures_k().mean()),
        skin_nm=runner.skin_nm,
        neighbor_list_builds=builds,
        cuda_graph=runner.cuda_graph,
        implementation=implementation_of(runner.model, device),
        noise=runner.noise_description(),
        **labels,
    )
