"""A production run of a replica runner: output, checkpoints, health checks, throughput.

:class:`Simulation` drives one :class:`~gnnmd.sim.runner.ReplicaRunner` (all
replicas of a single process, or one rank's shard of a ``torchrun`` job) for a
number of steps. Every ``report_interval`` steps each replica gets a
trajectory frame and a CSV row; every ``checkpoint_interval`` steps the state
is checkpointed atomically (after the outputs it counts are on disk).

Health: every ``health_interval`` steps, and before any frame or checkpoint,
each replica is checked for non-finite positions, velocities or energy and for
a kinetic temperature above its limit. A failing replica is reported by global
index, and its last good frame (from the previous passing check) is saved as
``replica_XXXX_last_good.pdb``. With ``on_failure="stop"`` the run then raises
:class:`~gnnmd.errors.SimulationError`, leaving the outputs and the last
checkpoint as they were; with ``"drop"`` the replica is removed and the others
continue, unchanged (their noise does not depend on the batch).

Committee: with a :class:`~gnnmd.sim.committee.CommitteeMonitor`, the committee
is evaluated every ``monitor.interval`` steps and at every log row, and the logs
gain the force-disagreement columns (:data:`~gnnmd.sim.reporters.COMMITTEE_COLUMNS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gnnmd.errors import CheckpointError, SimulationError
from gnnmd.sim.checkpoint import load_checkpoint, save_checkpoint
from gnnmd.sim.committee import CommitteeMonitor
from gnnmd.sim.reporters import (
    COMMITTEE_COLUMNS,
    CSV_COLUMNS,
    EnergyLog,
    TrajectoryWriter,
    replica_stem,
    save_frame_pdb,
)
from gnnmd.sim.runner import ReplicaRunner
from gnnmd.units import NS_PER_PS, SECONDS_PER_DAY

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
        on_failure: "stop" or "drop" (see the module docstring).
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
    """Throughput of one :meth:`Simulation.run` call (this process only)."""

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


Progress = Callable[[int, int, float], None]


class Simulation:
    """Run ``runner`` with outputs in ``options.directory``.

    Args:
        runner: the replicas of this process (its ``replica_ids`` name the files).
        options: output settings.
        frames_written: per replica, frames already on disk (continuing a run), else None.
        dropped: global replica -> reason, of replicas dropped earlier in this run.
        committee: evaluates a committee of models during the run (None: no committee columns).
    """

    def __init__(
        self,
        runner: ReplicaRunner,
        options: OutputOptions,
        frames_written: list[int] | None = None,
        dropped: dict[int, str] | None = None,
        committee: CommitteeMonitor | None = None,
    ) -> None:
        self.runner = runner
        self.committee = committee
        self.options = options
        self.directory = Path(options.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dropped: dict[int, str] = dict(dropped or {})
        #: One line per replica dropped during the last :meth:`run` (policy "drop").
        self.warnings: list[str] = []
        resuming = frames_written is not None
        keep = frames_written if resuming else [0] * runner.num_replicas
        columns = CSV_COLUMNS + (COMMITTEE_COLUMNS if committee is not None else ())
        self.writers: dict[int, tuple[TrajectoryWriter, EnergyLog]] = {}
        for replica, frames in zip(runner.replica_ids, keep, strict=True):
            stem = self.directory / replica_stem(replica)
            trajectory = TrajectoryWriter(
                stem.with_suffix(f".{options.trajectory_format}"), options.trajectory_format, frames
            )
            log = EnergyLog(stem.with_suffix(".csv"), runner.steps_done if resuming else None, columns)
            self.writers[replica] = (trajectory, log)
        self._last_good = (runner.steps_done, runner.positions.detach().clone())
        if not resuming:
            self.check_health()
            self.report()

    @classmethod
    def resume(
        cls,
        runner: ReplicaRunner,
        options: OutputOptions,
        document: dict | None = None,
        committee: CommitteeMonitor | None = None,
    ) -> Simulation:
        """Continue from ``options.checkpoint_path`` (or its already loaded ``document``).

        ``runner`` must hold the checkpoint's replicas, in its order; ``committee``
        must be given exactly when the run was started with one.
        """
        path = options.checkpoint_path
        document = document if document is not None else load_checkpoint(path)
        if list(document["replica_ids"]) != list(runner.replica_ids):
            raise CheckpointError(
                f"{path}: field 'replica_ids' is {document['replica_ids']}, "
                f"but the runner holds replicas {runner.replica_ids}"
            )
        recorded = document["extra"].get("committee")
        if (recorded is None) != (committee is None):
            had, has = ("a", "no") if recorded is not None else ("no", "a")
            raise CheckpointError(
                f"{path}: field 'extra.committee': the run was started with {had} committee, this one has "
                f"{has} committee; resume with the committee of the original run"
            )
        if committee is not None:
            try:
                committee.load_state(recorded)
            except CheckpointError as error:
                raise CheckpointError(f"{path}: {error}") from None
        runner.load_state(document)
        dropped = document["extra"].get("dropped", {})
        return cls(runner, options, document["frames_written"], dropped, committee)

    def _limits(self) -> list[float]:
        factor = self.options.max_temperature_factor
        return [factor * t if t > 0 else float("inf") for t in self.runner.target_temperatures_k]

    def check_health(self) -> None:
        """Apply the failure policy to replicas that went bad since the last check."""
        runner = self.runner
        failures = runner.failures(self._limits())
        if not failures:
            self._last_good = (runner.steps_done, runner.positions.detach().clone())
            return
        good_step, good_positions = self._last_good
        lines = []
        for index, reason in sorted(failures.items()):
            replica = runner.replica_ids[index]
            start, stop = runner.bead_ranges()[index]
            path = self.directory / f"{replica_stem(replica)}_last_good.pdb"
            save_frame_pdb(path, runner.topologies[index], good_positions[start:stop].cpu().numpy())
            lines.append(
                f"replica {replica} ({runner.topologies[index].name}): {reason} at step {runner.steps_done}; "
                f"last good frame (step {good_step}) saved to {path}"
            )
        message = "; ".join(lines)
        if self.options.on_failure == "stop" or len(failures) == runner.num_replicas:
            self.close()
            advice = (
                "every replica failed" if self.options.on_failure == "drop"
                else "use --on-failure drop to continue without the failed replicas"
            )  # fmt: skip
            raise SimulationError(
                f"{message}. Stopped: outputs so far and the checkpoints already written are intact "
                f"(try a smaller --dt-fs; {advice})"
            )
        for index in sorted(failures):
            replica = runner.replica_ids[index]
            self.dropped[replica] = f"{failures[index]} at step {runner.steps_done}"
            for writer in self.writers.pop(replica):
                writer.close()
        runner.drop(sorted(failures))
        self._last_good = (runner.steps_done, runner.positions.detach().clone())
        self.warnings.append(message + "; continuing without it")

    def report(self) -> None:
        """Write one frame and one CSV row per replica at the current step."""
        runner = self.runner
        positions = runner.positions.detach().cpu().numpy()
        potential = runner.energies.detach().cpu().tolist()
        kinetic = runner.kinetic_energies().cpu().tolist()
        temperature = runner.temperatures_k().cpu().tolist()
        time_ps = runner.steps_done * runner.settings.timestep_ps
        if self.committee is not None:
            self.committee.evaluate(runner)  # every row has a value (once per step, however often asked)
        for index, (start, stop) in enumerate(runner.bead_ranges()):
            replica = runner.replica_ids[index]
            trajectory, log = self.writers[replica]
            trajectory.write(positions[start:stop], time_ps, runner.steps_done)
            extra = self.committee.row(replica) if self.committee is not None else ()
            log.write(runner.steps_done, time_ps, potential[index], kinetic[index], temperature[index], extra)

    def checkpoint(self, extra: dict | None = None) -> None:
        """Make the outputs durable, then write the checkpoint that counts them (atomically)."""
        frames = []
        for replica in self.runner.replica_ids:
            trajectory, log = self.writers[replica]
            trajectory.sync()
            log.sync()
            frames.append(trajectory.frames)
        recorded = {"dropped": dict(self.dropped), **(extra or {})}
        if self.committee is not None:
            recorded["committee"] = self.committee.state()
        save_checkpoint(self.options.checkpoint_path, self.runner.state(), frames, recorded)

    def run(self, until_step: int, progress: Progress | None = None, extra: dict | None = None) -> RunSummary:
        """Step until ``runner.steps_done == until_step``, then checkpoint and return the throughput.

        ``progress(steps_done, until_step, ns_per_day)`` is called after every chunk of steps.
        """
        self.warnings = []
        runner, options, committee = self.runner, self.options, self.committee
        if until_step < runner.steps_done:
            raise ValueError(f"the run is already at step {runner.steps_done}, past {until_step}")
        start_step, simulated_ns = runner.steps_done, 0.0
        dt_ns = runner.settings.timestep_ps * NS_PER_PS
        started = time.perf_counter()
        while runner.steps_done < until_step:
            now = runner.steps_done
            boundaries = (
                [options.health_interval, options.report_interval]
                + ([options.checkpoint_interval] if options.checkpoint_interval else [])
                + ([committee.interval] if committee is not None else [])
            )
            target = min([until_step] + [now + b - now % b for b in boundaries])
            replicas = runner.num_replicas
            runner.step(target - now)
            simulated_ns += replicas * (target - now) * dt_ns
            self.check_health()
            if committee is not None and target % committee.interval == 0:
                committee.evaluate(runner)
            if target % options.report_interval == 0 or target == until_step:
                self.report()
            if (
                options.checkpoint_interval
                and target % options.checkpoint_interval == 0
                and target != until_step
            ):
                self.checkpoint(extra)
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(runner.steps_done, until_step, simulated_ns * SECONDS_PER_DAY / max(elapsed, 1e-9))
        self.checkpoint(extra)
        wall = time.perf_counter() - started
        peaks = committee.peaks() if committee is not None else None
        return RunSummary(
            runner.steps_done - start_step, wall, simulated_ns, runner.num_replicas, dict(self.dropped), peaks
        )

    def close(self) -> None:
        """Close every output file (frames already written stay on disk)."""
        for trajectory, log in self.writers.values():
            trajectory.close()
            log.close()
        self.writers = {}
