"""Langevin integration by BAOAB (Leimkuhler & Matthews), one force call per step.

Per step of length h, with per-bead friction γ and temperature T,
c₁ = exp(-γh), c₂ = √(1 - c₁²)::

    B  v += ½h F/m
    A  x += ½h v
    O  v  = c₁ v + c₂ √(kT/m) ξ,   ξ ~ N(0, 1)
    A  x += ½h v
       F  = force(x)
    B  v += ½h F/m

The step is split in two halves, :meth:`BAOAB.drift` (B A O A) and
:meth:`BAOAB.kick` (the last B), so that the caller can update a neighbour
list between the new positions and the force call.

Units: x nm, v nm/ps, F kJ/mol/nm, m amu, h ps, kT kJ/mol (F/m is then nm/ps²).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gnnmd.sim.noise import STREAM_THERMOSTAT, STREAM_VELOCITIES, CounterNoise, IntLike
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K

ForceFunction = Callable[[Tensor], tuple[Tensor, Tensor]]


def check_per_bead(name: str, values: Tensor, minimum_exclusive: bool) -> None:
    """Raise ValueError if a per-bead thermostat value is not finite, or negative / not positive."""
    bad = ~torch.isfinite(values) | ((values <= 0) if minimum_exclusive else (values < 0))
    if bool(bad.any()):
        index = int(torch.nonzero(bad)[0, 0])
        bound = "positive" if minimum_exclusive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}; bead {index} has {float(values[index])}")


class BAOAB:
    """BAOAB over (N, 3) positions with per-bead masses, temperatures and frictions.

    Args:
        masses_amu: (N,) amu, all positive.
        timestep_ps: h in ps.
        temperature_k: (N,) K, the thermostat temperature of each bead's replica.
        friction_per_ps: (N,) 1/ps, the friction of each bead's replica.
        noise: the counter-based noise of these beads (see :mod:`gnnmd.sim.noise`).

    All tensors share one device and floating dtype.
    """

    def __init__(
        self,
        masses_amu: Tensor,
        timestep_ps: float,
        temperature_k: Tensor,
        friction_per_ps: Tensor,
        noise: CounterNoise,
    ) -> None:
        if bool((masses_amu <= 0).any()):
            raise ValueError("every mass must be positive (amu)")
        if not timestep_ps > 0:
            raise ValueError(f"timestep_ps must be positive, got {timestep_ps}")
        check_per_bead("temperature_k", temperature_k, minimum_exclusive=False)
        check_per_bead("friction_per_ps", friction_per_ps, minimum_exclusive=False)
        self.noise = noise
        self.timestep_ps = float(timestep_ps)
        self.half_step = 0.5 * self.timestep_ps
        self.inverse_mass = (1.0 / masses_amu)[:, None]
        # (N, 1) columns broadcast over x, y, z.
        kt = (BOLTZMANN_KJ_PER_MOL_K * temperature_k)[:, None]
        self.thermal_velocity = torch.sqrt(kt * self.inverse_mass)
        self.c1 = torch.exp(-friction_per_ps * self.timestep_ps)[:, None]
        self.c2 = torch.sqrt(1.0 - self.c1 * self.c1)
        self.noise_scale = self.c2 * self.thermal_velocity

    def maxwell_boltzmann(self) -> Tensor:
        """Velocities (N, 3) nm/ps drawn at each bead's thermostat temperature."""
        return self.thermal_velocity * self.noise.normal(0, STREAM_VELOCITIES)

    @torch.no_grad()
    def drift(
        self, positions: Tensor, velocities: Tensor, forces: Tensor, step: IntLike
    ) -> tuple[Tensor, Tensor]:
        """B A O A of step number ``step`` (which keys the noise); returns new (positions, velocities)."""
        velocities = velocities + self.half_step * forces * self.inverse_mass
        positions = positions + self.half_step * velocities
        velocities = self.c1 * velocities + self.noise_scale * self.noise.normal(step, STREAM_THERMOSTAT)
        return positions + self.half_step * velocities, velocities

    @torch.no_grad()
    def kick(self, velocities: Tensor, forces: Tensor) -> Tensor:
        """The closing B: v + ½h F/m with the forces at the new positions."""
        return velocities + self.half_step * forces * self.inverse_mass

    def step(
        self,
        positions: Tensor,
        velocities: Tensor,
        forces: Tensor,
        force_function: ForceFunction,
        step: IntLike,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One whole step; returns new (positions, velocities, forces, energies)."""
        positions, velocities = self.drift(positions, velocities, forces, step)
        energies, forces = force_function(positions)
        return positions, self.kick(velocities, forces), forces, energies
