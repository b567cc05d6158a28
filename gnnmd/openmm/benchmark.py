"""Throughput of a gnnmd potential inside OpenMM (ns/day), and the per-step overhead of each route.

One OpenMM Simulation holds R replicas in one System (one force call per step,
the model seeing R graphs). Warm-up steps run first and are not timed; timed
regions are read from a monotonic clock around ``integrator.step``.

Two more figures come with each row:

- ``model_ms_per_evaluation``: one bare model evaluation of the same R replicas
  from Python (the exported TorchScript module called with float64 positions, as
  OpenMM's CPU and Reference platforms pass them, for the torch route;
  ``model.energy_and_forces`` for the python route). OpenMM steps and bare
  evaluations are timed in alternating blocks (:data:`BLOCKS`), so that a change
  in machine load during the run affects both alike.
- ``route_overhead_ms_per_step``: a Langevin step of the same particles whose
  force goes through the same route around a model that returns zeros
  (:mod:`gnnmd.openmm.overhead`).
"""

from __future__ import annotations

import copy
import resource
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import openmm
import openmm.unit
import torch

from gnnmd.engine import LangevinSettings
from gnnmd.engine.bench import BenchResult, synchronize
from gnnmd.export import export_potential
from gnnmd.models import is_trained
from gnnmd.nn.backends import implementation_of
from gnnmd.nn.potential import CGPotential
from gnnmd.openmm.overhead import route_overhead_ms_per_step
from gnnmd.openmm.platforms import PlatformSpec
from gnnmd.openmm.simulation import create_simulation, replica_positions
from gnnmd.systems import System
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K, ns_per_day

#: BenchResult.route for each route: how OpenMM calls the model.
ROUTE_BACKENDS = {"torch": "torchforce", "python": "pythonforce"}


@dataclass(frozen=True)
class OpenMMBenchRequest:
    """What to time: ``replicas`` copies of ``system`` with ``model`` by ``route`` on ``spec``.

    Attributes:
        steps / warmup_steps: timed and untimed Langevin steps.
        settings: time step (fs), temperature (K), friction (1/ps).
        model_name: how the user named the model (for the result row).
    """

    system: System
    model: CGPotential
    model_name: str
    route: str
    replicas: int
    spec: PlatformSpec
    settings: LangevinSettings
    steps: int
    warmup_steps: int
    seed: int = 0


#: Steps timed with the zero-model force of the route.
OVERHEAD_STEPS = 100
#: Number of alternating (OpenMM steps, bare evaluations) blocks, at most one step each.
BLOCKS = 5


def _time_steps(integrator: openmm.Integrator, steps: int) -> float:
    start = time.perf_counter()
    integrator.step(steps)
    return time.perf_counter() - start


def _time_evaluations(evaluate: Callable[[], None], evaluations: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(evaluations):
        evaluate()
    synchronize(device)
    return time.perf_counter() - start


def bare_evaluation(request: OpenMMBenchRequest) -> Callable[[], None]:
    """One bare evaluation (energy, forces) of the request's R replicas, outside OpenMM."""
    dtype, device = request.spec.model_dtype, request.spec.torch_device
    x = torch.as_tensor(
        replica_positions(request.system, request.replicas), dtype=torch.float64, device=device
    )
    local = copy.deepcopy(request.model)
    if request.route == "torch":
        module = export_potential(local, request.system.topology, request.replicas, forces=True, dtype=dtype)

        def evaluate() -> None:
            module(x)

    else:
        local = local.to(device=device, dtype=dtype)
        batch = local.pack([request.system.topology] * request.replicas, device)
        positions = x.to(dtype)

        def evaluate() -> None:
            local.energy_and_forces(positions, batch)

    return evaluate


def _blocks(steps: int) -> list[int]:
    """``steps`` split into at most BLOCKS nearly equal positive parts."""
    count = min(BLOCKS, steps)
    return [steps // count + (1 if i < steps % count else 0) for i in range(count)]


def time_interleaved(
    integrator: openmm.Integrator, evaluate: Callable[[], None], request: OpenMMBenchRequest
) -> tuple[float, float]:
    """Seconds for ``request.steps`` OpenMM steps and for as many bare evaluations, timed in alternation."""
    # Warm-up of both: TorchScript profiles and optimises on its first calls.
    integrator.step(request.warmup_steps)
    for _ in range(max(2, request.warmup_steps)):
        evaluate()
    device = request.spec.torch_device
    openmm_seconds = model_seconds = 0.0
    for block in _blocks(request.steps):
        openmm_seconds += _time_steps(integrator, block)
        model_seconds += _time_evaluations(evaluate, block, device)
    return openmm_seconds, model_seconds


def _mean_temperature_k(simulation: openmm.app.Simulation, beads: int) -> float:
    """Kinetic temperature of all beads (K), 3 degrees of freedom per bead."""
    kinetic = simulation.context.getState(getEnergy=True).getKineticEnergy()
    kinetic_kj = kinetic.value_in_unit(openmm.unit.kilojoule_per_mole)
    return 2.0 * kinetic_kj / (3.0 * beads * BOLTZMANN_KJ_PER_MOL_K)


def measure_openmm(request: OpenMMBenchRequest) -> tuple[BenchResult, dict[str, float]]:
    """Time the request; returns the result row and the overhead figures (ms).

    The second value holds ``model_ms_per_evaluation`` and
    ``route_overhead_ms_per_step`` (see the module docstring).

    Raises:
        SimulationError: the energy or a position is non-finite after the timed steps.
    """
    if request.steps < 1 or request.warmup_steps < 0:
        raise ValueError(
            f"need steps >= 1 and warmup_steps >= 0, got {request.steps}, {request.warmup_steps}"
        )
    simulation = create_simulation(
        request.system, request.model, route=request.route, replicas=request.replicas,
        platform=request.spec, langevin=request.settings, seed=request.seed,
    )  # fmt: skip
    elapsed, model_seconds = time_interleaved(simulation.integrator, bare_evaluation(request), request)
    # The finite-energy reporter only runs inside Simulation.step: check once here.
    for reporter in simulation.reporters:
        reporter.report(simulation, simulation.context.getState(getEnergy=True, getPositions=True))
    beads = request.system.topology.n_beads * request.replicas
    steps_per_second = request.steps / elapsed
    per_replica = ns_per_day(request.settings.timestep_fs, steps_per_second)
    ms_per_step = 1000.0 * elapsed / request.steps
    model_ms = 1000.0 * model_seconds / request.steps
    result = BenchResult(
        system=request.system.name,
        beads=request.system.topology.n_beads,
        replicas=request.replicas,
        steps=request.steps,
        warmup_steps=request.warmup_steps,
        dt_fs=request.settings.timestep_fs,
        backend=request.model.network.backend,
        route=ROUTE_BACKENDS[request.route],
        device=f"openmm-{request.spec.name}",
        dtype=str(request.spec.model_dtype).replace("torch.", ""),
        engine="openmm",
        model=request.model_name,
        model_trained=is_trained(request.model),
        ns_per_day=per_replica * request.replicas,
        ns_per_day_per_replica=per_replica,
        steps_per_second=steps_per_second,
        ms_per_step=ms_per_step,
        # ru_maxrss is in KiB on Linux: the whole process, OpenMM and torch included.
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        peak_memory_kind="process_peak_rss",
        final_mean_temperature_k=_mean_temperature_k(simulation, beads),
        implementation=implementation_of(request.model, "cpu"),
        noise=f"openmm ({type(simulation.integrator).__name__}, seed {request.seed})",
    )
    masses = np.tile(request.system.topology.masses_amu, request.replicas)
    positions = replica_positions(request.system, request.replicas)
    overhead = {
        "model_ms_per_evaluation": model_ms,
        "route_overhead_ms_per_step": route_overhead_ms_per_step(
            request.route, masses, positions, request.spec, OVERHEAD_STEPS
        ),
    }
    return result, overhead
