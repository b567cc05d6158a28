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

Ownership and resume: a Simulation holds a lock on its checkpoint in the
folder (:class:`~gnnmd.runfolder.RunFolderLock`) until :meth:`close`, refuses
to start afresh over an existing run unless told to ``overwrite``, and writes
a checkpoint at its first step, so a run killed at any moment can continue.
A resumed simulation must keep the report interval in ps; a new time step is
taken only when asked (``accept_changes``), from a checkpoint on a report
boundary, and the clock then continues in ps from the checkpoint's time.

Committee: with a :class:`~gnnmd.sim.committee.CommitteeMonitor`, the committee
is evaluated every ``monitor.interval`` steps and at every log row, and the logs
gain the force-disagreement columns (:data:`~gnnmd.sim.reporters.COMMITTEE_COLUMNS`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from gnnmd.errors import CheckpointError, SimulationError
from gnnmd.runfolder import RunFolderError, RunFolderLock
from gnnmd.sim.checkpoint import check_noise, load_checkpoint, save_checkpoint
from gnnmd.sim.committee import CommitteeMonitor
from gnnmd.sim.noise import GENERATOR
from gnnmd.sim.outputs import OutputOptions, RunSummary
from gnnmd.sim.reporters import (
    COMMITTEE_COLUMNS,
    CSV_COLUMNS,
    EnergyLog,
    TrajectoryWriter,
    replica_stem,
    save_frame_pdb,
)
from gnnmd.sim.runner import ReplicaRunner
from gnnmd.units import NS_PER_PS, PS_PER_FS, SECONDS_PER_DAY

#: Resume changes a caller may accept explicitly (see :meth:`Simulation.resume`).
ACCEPTABLE_CHANGES = ("timestep_fs",)
#: Relative tolerance of time comparisons (ps values rebuilt from step counts).
_TIME_TOLERANCE = 1e-9


Progress = Callable[[int, int, float], None]


class Simulation:
    """Run ``runner`` with outputs in ``options.directory``.

    Args:
        runner: the replicas of this process (its ``replica_ids`` name the files).
        options: output settings.
        frames_written: per replica, frames already on disk (continuing a run), else None.
        dropped: global replica -> reason, of replicas dropped earlier in this run.
        committee: evaluates a committee of models during the run (None: no committee columns).
        extra: plain values stored in every checkpoint under ``"extra"`` (e.g. a run id).
        overwrite: start afresh even where this process's checkpoint or outputs already exist.
        clock: (step, time in ps) at which the current time step took effect; (0, 0.0) for a
            run that kept one time step.

    Raises:
        RunFolderBusyError: another process holds this checkpoint's lock.
        RunFolderError: a fresh start would overwrite an existing run's files.
    """

    def __init__(
        self,
        runner: ReplicaRunner,
        options: OutputOptions,
        frames_written: list[int] | None = None,
        dropped: dict[int, str] | None = None,
        committee: CommitteeMonitor | None = None,
        extra: dict | None = None,
        overwrite: bool = False,
        clock: tuple[int, float] = (0, 0.0),
    ) -> None:
        self.runner = runner
        self.committee = committee
        self.options = options
        self.directory = Path(options.directory)
        self.extra = dict(extra or {})
        self.clock = (int(clock[0]), float(clock[1]))
        self.dropped: dict[int, str] = dict(dropped or {})
        #: One line per replica dropped during the last :meth:`run` (policy "drop").
        self.warnings: list[str] = []
        self.writers: dict[int, tuple[TrajectoryWriter, EnergyLog]] = {}
        #: Step of the last checkpoint on disk (a resumed run starts at its checkpoint).
        self.checkpoint_step = runner.steps_done
        self._lock = RunFolderLock(self.directory, f".{options.checkpoint_name}.lock").acquire()
        try:
            self._open(frames_written, overwrite)
        except BaseException:
            self.close()
            raise

    def _open(self, frames_written: list[int] | None, overwrite: bool) -> None:
        runner, options = self.runner, self.options
        resuming = frames_written is not None
        if not resuming and not overwrite:
            self._refuse_overwrite()
        keep = frames_written if resuming else [0] * runner.num_replicas
        columns = CSV_COLUMNS + (COMMITTEE_COLUMNS if self.committee is not None else ())
        for replica, frames in zip(runner.replica_ids, keep, strict=True):
            stem = self.directory / replica_stem(replica)
            trajectory = TrajectoryWriter(
                stem.with_suffix(f".{options.trajectory_format}"), options.trajectory_format, frames,
                frame_interval_ps=self.report_interval_ps,
            )  # fmt: skip
            log = EnergyLog(stem.with_suffix(".csv"), runner.steps_done if resuming else None, columns)
            self.writers[replica] = (trajectory, log)
        self._last_good = (runner.steps_done, runner.positions.detach().clone())
        if not resuming:
            self.check_health()
            self.report()
            self.checkpoint()  # at the first step: a run killed at any moment can resume

    def _refuse_overwrite(self) -> None:
        """A fresh start must not overwrite a run: this process's checkpoint or replica files."""
        existing = [self.options.checkpoint_path] if self.options.checkpoint_path.exists() else []
        for replica in self.runner.replica_ids:
            stem = self.directory / replica_stem(replica)
            for suffix in (f".{self.options.trajectory_format}", ".csv"):
                if stem.with_suffix(suffix).exists():
                    existing.append(stem.with_suffix(suffix))
        if existing:
            shown = ", ".join(p.name for p in existing[:4]) + (" ..." if len(existing) > 4 else "")
            raise RunFolderError(
                f"{self.directory} already holds a run ({shown}); resume it with Simulation.resume, "
                "or pass overwrite=True to replace it"
            )

    @property
    def report_interval_ps(self) -> float:
        """Time between frames and log rows, ps (constant over a run, whatever its time steps)."""
        return _report_interval_ps(self.options, self.runner)

    def time_ps(self) -> float:
        """Simulated time of the current step, ps."""
        origin_step, origin_ps = self.clock
        return origin_ps + (self.runner.steps_done - origin_step) * self.runner.settings.timestep_ps

    @classmethod
    def resume(
        cls,
        runner: ReplicaRunner,
        options: OutputOptions,
        document: dict | None = None,
        committee: CommitteeMonitor | None = None,
        extra: dict | None = None,
        accept_changes: tuple[str, ...] = (),
    ) -> Simulation:
        """Continue from ``options.checkpoint_path`` (or its already loaded ``document``).

        ``runner`` must hold the checkpoint's replicas, in its order; ``committee``
        must be given exactly when the run was started with one. The report
        interval must stay the same in ps. A runner with another time step is
        refused unless ``"timestep_fs"`` is in ``accept_changes``; the new step
        then takes effect at the checkpoint, which must lie on a report boundary.
        """
        path = options.checkpoint_path
        document = document if document is not None else load_checkpoint(path)
        check_noise(path, document, GENERATOR)
        unknown = sorted(set(accept_changes) - set(ACCEPTABLE_CHANGES))
        if unknown:
            raise ValueError(f"accept_changes {unknown}: only {ACCEPTABLE_CHANGES} can change on resume")
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
        clock = _resumed_clock(path, document, runner, options, "timestep_fs" in accept_changes)
        runner.load_state(document)
        dropped = document["extra"].get("dropped", {})
        return cls(runner, options, document["frames_written"], dropped, committee, extra, clock=clock)

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
            dt_fs = runner.settings.timestep_fs
            advice = (
                "every replica failed" if self.options.on_failure == "drop"
                else "or --on-failure drop to continue without the failed replicas"
            )  # fmt: skip
            raise SimulationError(
                f"{message}. Stopped: the outputs up to the last checkpoint (step {self.checkpoint_step}) "
                f"are intact. To continue from it with a smaller time step: the same command with "
                f"--resume --dt-fs {dt_fs / 2:g} --accept-change dt-fs ({advice})"
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
        time_ps = self.time_ps()
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
        recorded = {**self.extra, **(extra or {}), "dropped": dict(self.dropped)}
        recorded.update(
            clock=list(self.clock),
            time_ps=self.time_ps(),
            report_interval=self.options.report_interval,
            report_interval_ps=self.report_interval_ps,
        )
        if self.committee is not None:
            recorded["committee"] = self.committee.state()
        save_checkpoint(self.options.checkpoint_path, self.runner.state(), frames, recorded)
        self.checkpoint_step = self.runner.steps_done

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
        origin = self.clock[0]  # intervals count from where the current time step took effect
        while runner.steps_done < until_step:
            now = runner.steps_done
            boundaries = (
                [options.health_interval, options.report_interval]
                + ([options.checkpoint_interval] if options.checkpoint_interval else [])
                + ([committee.interval] if committee is not None else [])
            )
            target = min([until_step] + [now + b - (now - origin) % b for b in boundaries])
            replicas = runner.num_replicas
            runner.step(target - now)
            simulated_ns += replicas * (target - now) * dt_ns
            self.check_health()
            elapsed_steps = target - origin
            if committee is not None and elapsed_steps % committee.interval == 0:
                committee.evaluate(runner)
            if elapsed_steps % options.report_interval == 0 or target == until_step:
                self.report()
            if (
                options.checkpoint_interval
                and elapsed_steps % options.checkpoint_interval == 0
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
        """Close every output file (frames already written stay on disk) and release the folder.

        Every file is closed even if one fails (a full disk); the first failure is raised after.
        """
        failures = []
        for writers in self.writers.values():
            for writer in writers:
                try:
                    writer.close()
                except Exception as error:  # keep closing the others
                    failures.append(error)
        self.writers = {}
        self._lock.release()
        if failures:
            raise failures[0]


def _resumed_clock(
    path: Path, document: dict, runner: ReplicaRunner, options: OutputOptions, new_timestep_accepted: bool
) -> tuple[int, float]:
    """The (step, ps) clock origin of a resumed run; refuses a changed report interval or time step."""
    extra = document["extra"]
    step, old_fs = int(document["step"]), float(document["timestep_fs"])
    origin_step, origin_ps = extra.get("clock", (0, 0.0))
    time_ps = float(extra.get("time_ps", origin_ps + (step - origin_step) * old_fs * PS_PER_FS))
    new_fs = runner.settings.timestep_fs
    old_report_ps = extra.get("report_interval_ps")
    new_report_ps = _report_interval_ps(options, runner)
    if old_report_ps is not None and not _same_time(old_report_ps, new_report_ps):
        raise CheckpointError(
            f"{path}: field 'extra.report_interval_ps' is {old_report_ps:g} but this run reports every "
            f"{new_report_ps:g} ps; one trajectory cannot hold two frame spacings: keep the report interval"
        )
    if _same_time(old_fs, new_fs):
        return int(origin_step), float(origin_ps)
    if not new_timestep_accepted:
        raise CheckpointError(
            f"{path}: field 'timestep_fs' is {old_fs:g} but this run asks for {new_fs:g}; a new time step "
            "must be accepted explicitly (--accept-change dt-fs, or accept_changes=('timestep_fs',))"
        )
    old_report = extra.get("report_interval")
    if old_report is not None and (step - int(origin_step)) % int(old_report) != 0:
        raise CheckpointError(
            f"{path}: the checkpoint (step {step}, {time_ps:g} ps) is not on a report boundary, so a new "
            "time step would shift the frame times; resume with the old time step to the next checkpoint"
        )
    return step, time_ps


def _report_interval_ps(options: OutputOptions, runner: ReplicaRunner) -> float:
    return options.report_interval * runner.settings.timestep_ps


def _same_time(a: float, b: float) -> bool:
    return abs(a - b) <= _TIME_TOLERANCE * max(abs(a), abs(b), 1e-12)
