"""Langevin integration by BAOAB (Leimkuhler & Matthews), one force call per step.

Per step of length h, with friction γ and c₁ = exp(-γh), c₂ = √(1 - c₁²)::

    B  v += ½h F/m
    A  x += ½h v
    O  v  = c₁ v + c₂ √(kT/m) ξ,   ξ ~ N(0, 1)
    A  x += ½h v
       F  = force(x)
    B  v += ½h F/m

Units: x nm, v nm/ps, F kJ/mol/nm, m amu, h ps, kT kJ/mol (F/m is then nm/ps²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from gnnmd.units import PS_PER_FS, kt_kj_per_mol


@dataclass(frozen=True)
class LangevinSettings:
    """Thermostat and step: ``timestep_fs`` (fs), ``temperature_k`` (K), ``friction_per_ps`` (1/ps)."""

    timestep_fs: float = 4.0
    temperature_k: float = 300.0
    friction_per_ps: float = 1.0

    def __post_init__(self) -> None:
        if not self.timestep_fs > 0:
            raise ValueError(f"timestep_fs must be positive, got {self.timestep_fs}")
        if not self.temperature_k >= 0:
            raise ValueError(f"temperature_k must be >= 0, got {self.temperature_k}")
        if not self.friction_per_ps >= 0:
            raise ValueError(f"friction_per_ps must be >= 0, got {self.friction_per_ps}")

    @property
    def timestep_ps(self) -> float:
        return self.timestep_fs * PS_PER_FS


ForceFunction = Callable[[Tensor], tuple[Tensor, Tensor]]


class BAOAB:
    """BAOAB over (N, 3) positions with per-bead masses.

    Args:
        masses_amu: (N,) amu.
        settings: step, temperature and friction.
        generator: the random stream of the O step (seeded by the caller).
    """

    def __init__(self, masses_amu: Tensor, settings: LangevinSettings, generator: torch.Generator) -> None:
        if bool((masses_amu <= 0).any()):
            raise ValueError("every mass must be positive (amu)")
        self.settings = settings
        self.generator = generator
        self.inverse_mass = (1.0 / masses_amu)[:, None]
        self.thermal_velocity = torch.sqrt(kt_kj_per_mol(settings.temperature_k) * self.inverse_mass)
        h = settings.timestep_ps
        self.half_step = 0.5 * h
        self.c1 = math.exp(-settings.friction_per_ps * h)
        self.c2 = math.sqrt(1.0 - self.c1 * self.c1)

    def maxwell_boltzmann(self, like: Tensor) -> Tensor:
        """Velocities (N, 3) nm/ps drawn at the thermostat temperature."""
        return self.thermal_velocity * self.noise(like)

    def noise(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype, device=like.device)

    @torch.no_grad()
    def step(
        self, positions: Tensor, velocities: Tensor, forces: Tensor, force_function: ForceFunction
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step; returns new (positions, velocities, forces, energies)."""
        velocities = velocities + self.half_step * forces * self.inverse_mass
        positions = positions + self.half_step * velocities
        velocities = self.c1 * velocities + self.c2 * self.thermal_velocity * self.noise(velocities)
        positions = positions + self.half_step * velocities
        with torch.enable_grad():
            energies, forces = force_function(positions)
        velocities = velocities + self.half_step * forces * self.inverse_mass
        return positions, velocities, forces, energies
