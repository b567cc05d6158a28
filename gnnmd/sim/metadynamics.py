"""Well-tempered metadynamics along one torsion: free energies across barriers plain runs never cross.

Every replica (a *walker*) carries a history-dependent bias V(s) along one torsion s of its
molecule (alanine dipeptide's φ). Every ``pace_steps`` steps each walker adds a Gaussian at
its current s, of height h₀ · exp(−V(s) / k_B ΔT) with ΔT = (γ − 1) T for the bias factor γ
(well-tempered metadynamics: Barducci, Bussi & Parrinello, PRL 100, 020603, 2008). The walkers of
one *group* share one bias (multiple walkers); groups never see each other, so their results
are independent estimates and their spread is the statistical error. Once the bias has
converged the free energy along s is F(s) = −γ/(γ − 1) · V(s) + const.

The bias lives on a periodic grid of G points over [−π, π): its value and its slope, each summed
exactly from the Gaussians, read by cubic Hermite interpolation, so the force is the exact
derivative of the energy (on a 1° grid the read's error is far below k_B T). The replica runner
gets the bias through its force-provider hook (:mod:`gnnmd.engine.forces`): the model's energies
and forces plus the bias's, so any backend runs underneath.
:func:`gnnmd.analysis.reweighting.biased_populations` turns the free energy and the walkers'
samples into state populations.

Units: s in rad, energies kJ/mol, forces kJ/mol/nm, temperature K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.nn.potential import CGPotential
from gnnmd.nn.priors.geometry import dihedral_angles
from gnnmd.topology import CGTopology
from gnnmd.units import kt_kj_per_mol

if TYPE_CHECKING:
    from gnnmd.sim.runner import ReplicaRunner


@dataclass(frozen=True)
class MetadynamicsSettings:
    """Gaussian height h₀ (kJ/mol) and width σ (rad), bias factor γ (> 1), deposition pace
    (steps), grid points over [−π, π), and the temperature T (K) the walkers are held at."""

    height_kj_per_mol: float = 1.0
    width_rad: float = 0.3
    bias_factor: float = 6.0
    pace_steps: int = 250
    grid_points: int = 360
    temperature_k: float = 300.0

    def __post_init__(self) -> None:
        positive = {"height_kj_per_mol": self.height_kj_per_mol, "width_rad": self.width_rad,
                    "temperature_k": self.temperature_k, "pace_steps": self.pace_steps}  # fmt: skip
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"metadynamics {name} must be positive and finite, got {value}")
        if not self.bias_factor > 1:
            raise ValueError(f"metadynamics bias_factor must exceed 1, got {self.bias_factor}")
        if self.width_rad > math.pi / 6:
            # Each Gaussian is summed at its nearest periodic image only: exact to exp(-18) up to π/6.
            raise ValueError(f"metadynamics width_rad must be at most π/6 (0.52) rad, got {self.width_rad}")
        if self.grid_points < 36:
            raise ValueError(f"metadynamics grid_points must be at least 36, got {self.grid_points}")

    @property
    def bias_kt_kj_per_mol(self) -> float:
        """k_B ΔT = k_B (γ − 1) T: the energy scale over which deposits shrink."""
        return kt_kj_per_mol((self.bias_factor - 1.0) * self.temperature_k)


def wrap_angle(angle: Tensor) -> Tensor:
    """Angles mapped into [−π, π)."""
    return torch.remainder(angle + math.pi, 2.0 * math.pi) - math.pi


class TorsionBias:
    """The bias V(s) of ``groups`` independent groups of walkers on a periodic grid.

    Attributes:
        grid: (G,) rad, the grid points −π + k · 2π/G.
        value, slope: (groups, G) float64, V in kJ/mol and dV/ds in kJ/mol/rad at the grid points.
        deposits: (groups,) int64, Gaussians added per group.
    """

    def __init__(self, settings: MetadynamicsSettings, groups: int = 1) -> None:
        if groups < 1:
            raise ValueError(f"metadynamics needs at least one group of walkers, got {groups}")
        self.settings = settings
        points = settings.grid_points
        self.spacing = 2.0 * math.pi / points
        self.grid = -math.pi + self.spacing * torch.arange(points, dtype=torch.float64)
        self.value = torch.zeros(groups, points, dtype=torch.float64)
        self.slope = torch.zeros(groups, points, dtype=torch.float64)
        self.deposits = torch.zeros(groups, dtype=torch.int64)

    @property
    def groups(self) -> int:
        return int(self.value.shape[0])

    def evaluate(self, s: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
        """V (R,) kJ/mol and dV/ds (R,) kJ/mol/rad of walkers at torsions ``s`` (R,) rad in groups
        ``group`` (R,) int64; float64. A cubic Hermite read of the grid's values and slopes: the
        slope returned is the exact derivative of the value returned (forces conserve energy)."""
        position = (wrap_angle(s.to(torch.float64)) + math.pi) / self.spacing
        lower = torch.floor(position)
        t = position - lower
        first = lower.to(torch.int64) % self.value.shape[1]
        second = (first + 1) % self.value.shape[1]
        v0, v1 = self.value[group, first], self.value[group, second]
        m0, m1 = self.spacing * self.slope[group, first], self.spacing * self.slope[group, second]
        t2, t3 = t * t, t * t * t
        value = (2 * t3 - 3 * t2 + 1) * v0 + (t3 - 2 * t2 + t) * m0 + (3 * t2 - 2 * t3) * v1 + (t3 - t2) * m1
        slope = (6 * t2 - 6 * t) * (v0 - v1) + (3 * t2 - 4 * t + 1) * m0 + (3 * t2 - 2 * t) * m1
        return value, slope / self.spacing

    def deposit(self, s: Tensor, group: Tensor) -> None:
        """Add one Gaussian per walker at its torsion ``s`` (R,) rad to its group's bias, each of
        well-tempered height h₀ · exp(−V(s) / k_B ΔT) (V before this deposit)."""
        s = s.detach().to(torch.float64)
        bias, _ = self.evaluate(s, group)
        heights = self.settings.height_kj_per_mol * torch.exp(-bias / self.settings.bias_kt_kj_per_mol)
        offset = wrap_angle(self.grid[None, :] - s[:, None])  # (R, G)
        width = self.settings.width_rad
        gaussians = heights[:, None] * torch.exp(-0.5 * (offset / width) ** 2)
        self.value.index_add_(0, group, gaussians)
        self.slope.index_add_(0, group, -gaussians * offset / width**2)
        self.deposits.index_add_(0, group, torch.ones_like(group))

    def free_energy(self) -> Tensor:
        """(groups, G) kJ/mol: F(s) = −γ/(γ − 1) · V(s) at the grid points, each group's minimum 0."""
        factor = self.settings.bias_factor / (self.settings.bias_factor - 1.0)
        energy = -factor * self.value
        return energy - energy.min(dim=1, keepdim=True).values


class TorsionMetadynamics:
    """Force-provider factory (:class:`gnnmd.engine.forces.ForceProviderFactory`): the model over all
    pairs plus the bias of ``bias`` along one torsion of every replica.

    Args:
        bias: the shared bias of the walkers' groups.
        torsion: the four beads (indices within a molecule) of the biased torsion, the same
            in every replica (one molecule type).
        groups: (R,) the group of each replica, in packing order.
    """

    def __init__(self, bias: TorsionBias, torsion: Sequence[int], groups: Sequence[int]) -> None:
        if len(torsion) != 4:
            raise ValueError(f"a torsion has four beads, got {list(torsion)}")
        group = torch.as_tensor(list(groups), dtype=torch.int64)
        if group.numel() and not (0 <= int(group.min()) and int(group.max()) < bias.groups):
            raise ValueError(f"walker groups must lie in 0..{bias.groups - 1}, got {sorted(set(groups))}")
        self.bias = bias
        self.torsion = [int(b) for b in torsion]
        self.group = group

    def __call__(
        self, model: CGPotential, topologies: Sequence[CGTopology], device: torch.device
    ) -> BiasedForces:
        if len(topologies) != len(self.group):
            raise ValueError(
                f"metadynamics walkers were assigned for {len(self.group)} replicas, the runner has "
                f"{len(topologies)}: a dropped replica would leave its group's bias half-built; start again"
            )
        return BiasedForces(model, topologies, device, self)


class BiasedForces:
    """Energies (R,) kJ/mol (model + bias) and forces (N, 3) kJ/mol/nm at positions (N, 3) nm."""

    def __init__(
        self,
        model: CGPotential,
        topologies: Sequence[CGTopology],
        device: torch.device,
        owner: TorsionMetadynamics,
    ) -> None:
        for topology in topologies:
            if max(owner.torsion) >= topology.n_beads:
                raise ValueError(
                    f"torsion {owner.torsion} is beyond {topology.name}'s {topology.n_beads} beads"
                )
        self.model = model
        self.batch = model.pack(topologies, device)
        self.owner = owner
        # (R, 4): the biased torsion's beads in the packed arrays, from each replica's first bead.
        torsion = torch.as_tensor(owner.torsion, dtype=torch.int64, device=device)
        self.beads = self.batch.ptr[:-1, None] + torsion[None, :]

    def torsions(self, positions: Tensor) -> Tensor:
        """(R,) rad: every replica's biased torsion."""
        return dihedral_angles(positions, self.beads, self.batch.graph_index)

    def __call__(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        energies, forces = self.model.energy_and_forces(positions, self.batch)
        with torch.enable_grad():
            x = positions.detach().requires_grad_(True)
            s = self.torsions(x)
            bias, slope = self.owner.bias.evaluate(s.detach().cpu(), self.owner.group)
            (gradient,) = torch.autograd.grad((s * slope.to(s.device, s.dtype)).sum(), x)
        return energies + bias.to(energies.device, energies.dtype), forces - gradient


def run_walkers(runner: ReplicaRunner, metadynamics: TorsionMetadynamics, deposits: int) -> np.ndarray:
    """Step ``runner`` (built with ``forces=metadynamics``) for ``deposits`` paces, each ending in
    a deposit by every walker; returns the frames at the deposits, (deposits, R, n, 3) nm.
    SimulationError (before the deposit) when a walker's state is not finite."""
    provider = runner.provider
    if not isinstance(provider, BiasedForces) or provider.owner is not metadynamics:
        raise ValueError("the runner's forces are not this metadynamics' (pass forces=metadynamics)")
    pace = metadynamics.bias.settings.pace_steps
    frames = []
    for _ in range(deposits):
        runner.step(pace)
        runner.check_finite()  # a non-finite walker would poison its group's bias
        positions = runner.positions.detach()
        metadynamics.bias.deposit(provider.torsions(positions).cpu(), metadynamics.group)
        frames.append(positions.cpu().numpy().reshape(runner.num_replicas, -1, 3))
    return np.stack(frames)
