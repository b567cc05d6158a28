"""The replica runner: R replicas (same or different proteins) stepped as one packed graph.

Every step makes exactly one model call over all replicas. This is the loop
behind ``gnnmd bench``; the replica-runner issue grows it (Verlet skins,
checkpoints, reporters, CUDA graphs).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.errors import SimulationError
from gnnmd.nn.potential import CGPotential
from gnnmd.sim.integrators import BAOAB, LangevinSettings
from gnnmd.systems import System
from gnnmd.topology import CGTopology
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K


class ReplicaRunner:
    """Batched Langevin dynamics.

    Args:
        model: the potential (moved to ``device`` and ``dtype``; do not share it
            with code that needs another dtype).
        topologies: one per replica, in order.
        positions_nm: (N, 3) nm initial positions of all beads, replicas back to back.
        settings: Langevin settings (default: LangevinSettings()).
        device: "cpu" or "cuda".
        dtype: torch.float32 or torch.float64.
        seed: seeds the velocities and the thermostat noise.
    """

    def __init__(
        self,
        model: CGPotential,
        topologies: Sequence[CGTopology],
        positions_nm: np.ndarray,
        settings: LangevinSettings | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype)
        self.topologies = list(topologies)
        self.batch = model.pack(self.topologies, self.device)
        n_beads = int(self.batch.ptr[-1])
        positions = torch.as_tensor(np.asarray(positions_nm), dtype=dtype, device=self.device)
        if positions.shape != (n_beads, 3):
            raise ValueError(f"positions_nm has shape {tuple(positions.shape)}, expected ({n_beads}, 3)")
        if not bool(torch.isfinite(positions).all()):
            raise ValueError("positions_nm contains NaN or infinite values")
        masses = np.concatenate([t.masses_amu for t in self.topologies])
        self.masses = torch.as_tensor(masses, dtype=dtype, device=self.device)
        self.settings = settings if settings is not None else LangevinSettings()
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.integrator = BAOAB(self.masses, self.settings, self.generator)
        self.positions = positions
        self.velocities = self.integrator.maxwell_boltzmann(positions)
        self.energies, self.forces = self.evaluate(positions)
        self.steps_done = 0

    @classmethod
    def replicas_of(cls, model: CGPotential, system: System, replicas: int, **kwargs) -> ReplicaRunner:
        """``replicas`` copies of ``system``, all starting from its native structure."""
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        positions = np.tile(system.positions_nm, (replicas, 1))
        return cls(model, [system.topology] * replicas, positions, **kwargs)

    @property
    def num_replicas(self) -> int:
        return int(self.batch.ptr.shape[0] - 1)

    def evaluate(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Energies (R,) kJ/mol and forces (N, 3) kJ/mol/nm at ``positions`` (N, 3) nm."""
        return self.model.energy_and_forces(positions, self.batch)

    def step(self, steps: int = 1) -> None:
        """Advance every replica by ``steps`` BAOAB steps."""
        for _ in range(steps):
            self.positions, self.velocities, self.forces, self.energies = self.integrator.step(
                self.positions, self.velocities, self.forces, self.evaluate
            )
        self.steps_done += steps

    def temperatures_k(self) -> Tensor:
        """(R,) instantaneous kinetic temperature of each replica, K (3 degrees of freedom per bead)."""
        kinetic = 0.5 * self.masses[:, None] * self.velocities * self.velocities
        per_replica = torch.zeros(self.num_replicas, dtype=self.dtype, device=self.device)
        per_replica.index_add_(0, self.batch.graph_index, kinetic.sum(dim=1))
        beads = (self.batch.ptr[1:] - self.batch.ptr[:-1]).to(self.dtype)
        return 2.0 * per_replica / (3.0 * beads * BOLTZMANN_KJ_PER_MOL_K)

    def check_finite(self) -> None:
        """Raise SimulationError naming every replica with non-finite energy or positions."""
        finite_beads = torch.isfinite(self.positions).all(dim=1).to(torch.int64)
        finite_count = torch.zeros(self.num_replicas, dtype=torch.int64, device=self.device)
        finite_count.index_add_(0, self.batch.graph_index, finite_beads)
        beads = self.batch.ptr[1:] - self.batch.ptr[:-1]
        bad = (finite_count != beads) | ~torch.isfinite(self.energies)
        if bool(bad.any()):
            replicas = torch.nonzero(bad).flatten().tolist()
            raise SimulationError(
                f"replica(s) {replicas} have non-finite energy or positions after step "
                f"{self.steps_done}; try a smaller --dt-fs"
            )
