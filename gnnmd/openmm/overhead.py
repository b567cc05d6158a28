"""The per-step cost of a force route itself, measured with a model that does nothing.

A System of the same particles (same masses) holds one force of the route whose
"model" returns zero energy and zero forces, so a Langevin step costs only
what the route adds around a model: OpenMM's integrator, handing the positions
to torch and the forces back, and for the python route the State object and
the Python call. Timing the bare model instead and subtracting it from the full
step does not work for the torch route: the TorchScript module called from
Python is slower than the same module called by TorchForce from C++ (see
benchmarks/RESULTS.md), so the difference comes out negative.
"""

from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np
import openmm
import openmm.unit
import torch
from torch import Tensor, nn

from gnnmd.engine import LangevinSettings
from gnnmd.openmm.platforms import PlatformSpec, check_torch_plugin, import_openmmtorch


class ZeroForces(nn.Module):
    """TorchForce module with gnnmd's signature that returns zero energy and forces."""

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """positions (N, 3) nm -> (energy () kJ/mol, forces (N, 3) kJ/mol/nm), all zero."""
        forces = torch.zeros_like(positions)
        return forces.sum(), forces


class ZeroEvaluator:
    """PythonForce callable doing the conversions of gnnmd's ModelEvaluator around no model."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, device

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        positions = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        x = torch.as_tensor(np.asarray(positions), dtype=self.dtype, device=self.device)
        forces = torch.zeros_like(x)
        return float(forces.sum()), forces.to("cpu", torch.float64).numpy()


def zero_force(route: str, spec: PlatformSpec) -> openmm.Force:
    """The route's force around a model that returns zeros."""
    if route == "torch":
        check_torch_plugin(spec)
        force = import_openmmtorch().TorchForce(torch.jit.script(ZeroForces()))
        force.setOutputsForces(True)
        return force
    return openmm.PythonForce(ZeroEvaluator(spec.model_dtype, spec.torch_device))


def route_overhead_ms_per_step(
    route: str, masses_amu: np.ndarray, positions_nm: np.ndarray, spec: PlatformSpec, steps: int
) -> float:
    """Milliseconds per Langevin step of ``len(masses_amu)`` particles with a zero force by ``route``."""
    system = openmm.System()
    for mass in masses_amu:
        system.addParticle(float(mass))
    system.addForce(zero_force(route, spec))
    settings = LangevinSettings()
    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_k, settings.friction_per_ps, settings.timestep_ps
    )
    context = openmm.Context(system, integrator, spec.platform(), spec.properties())
    context.setPositions(positions_nm * openmm.unit.nanometer)
    integrator.step(max(2, steps // 10))  # warm-up: TorchScript profiles on its first calls
    start = time.perf_counter()
    integrator.step(steps)
    return 1000.0 * (time.perf_counter() - start) / steps
