"""Thermostat and time step settings shared by every engine (replica runner, OpenMM, ASE, IPU).

Units: time steps in fs at the boundary (``timestep_fs``), ps inside; K; 1/ps.
"""

from __future__ import annotations

from dataclasses import dataclass

from gnnmd.units import PS_PER_FS


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
