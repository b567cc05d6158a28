"""What a production run writes, where and how often (:class:`OutputOptions`), and what one
:meth:`~gnnmd.sim.simulation.Simulation.run` call measured (:class:`RunSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gnnmd.units import SECONDS_PER_DAY

ON_FAILURE = ("stop", "drop")


@dataclass(frozen=True)
class OutputOptions:
    """Where and how often a run writes.

    Attributes:
        directory: output folder.
        report_interval: steps between trajectory frames and CSV rows (> 0).
        checkpoint_interval: steps between checkpoints (0: only at the end).
        health_interval: steps between health checks (> 0).
        trajectory_format: "dcd" or "xtc".
        on_failure: "stop" or "drop" (see :mod:`gnnmd.sim.simulation`).
        max_temperature_factor: a replica fails above this many times its thermostat temperature.
        checkpoint_name: file name of this process's checkpoint in ``directory``.
    """

    directory: Path
    report_interval: int = 1000
    checkpoint_interval: int = 10000
    health_interval: int = 100
    trajectory_format: str = "dcd"
    on_failure: str = "stop"
    max_temperature_factor: float = 10.0
    checkpoint_name: str = "checkpoint.pt"

    def __post_init__(self) -> None:
        for name in ("report_interval", "health_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 step, got {getattr(self, name)}")
        if self.checkpoint_interval < 0:
            raise ValueError(f"checkpoint_interval must be >= 0 steps, got {self.checkpoint_interval}")
        if self.on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure {self.on_failure!r} is not one of {ON_FAILURE}")
        if not self.max_temperature_factor > 1:
            raise ValueError(f"max_temperature_factor must be above 1, got {self.max_temperature_factor}")

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.directory) / self.checkpoint_name


@dataclass
class RunSummary:
    """Throughput of one :meth:`~gnnmd.sim.simulation.Simulation.run` call (this process only)."""

    steps: int
    wall_seconds: float
    simulated_ns: float
    replicas_at_end: int
    dropped: dict[int, str] = field(default_factory=dict)
    #: global replica -> its largest committee disagreement so far (see CommitteeMonitor.peaks); None without.
    committee: dict[int, dict] | None = None

    @property
    def ns_per_day(self) -> float:
        """Aggregate simulated ns per wall-clock day of this process."""
        return self.simulated_ns * SECONDS_PER_DAY / self.wall_seconds if self.wall_seconds > 0 else 0.0
