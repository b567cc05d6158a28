"""A ready ``openmm.app.Simulation`` for a CG system, and the reporters that go with it.

:func:`create_simulation` builds the System (:func:`gnnmd.openmm.create_system`),
a Langevin integrator (``LangevinMiddleIntegrator``: the same BAOAB splitting as
gnnmd's replica runner), places every replica at the native structure, draws
velocities at the thermostat temperature, checks the first energy is finite and
attaches reporters:

- a trajectory reporter chosen by file suffix (:func:`trajectory_reporter`):
  ``.dcd`` (OpenMM's DCDReporter), ``.xtc`` (mdtraj's XTCReporter), ``.h5``
  (mdtraj's HDF5Reporter, needs PyTables); all read back with
  ``mdtraj.load(path, top=<CG PDB>)`` or ``top=topology.to_mdtraj()``;
- an energy log (OpenMM's StateDataReporter) when asked for;
- :class:`FiniteEnergyReporter`, which stops the run with a
  :class:`~gnnmd.errors.SimulationError` as soon as an energy or position is
  not finite (frames already written stay on disk).

Units: nm, ps, K, kJ/mol, amu; the time step is given in fs (``timestep_fs``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import openmm
import openmm.app
import openmm.unit

from gnnmd.engine import LangevinSettings
from gnnmd.errors import OpenMMSetupError, SimulationError
from gnnmd.openmm.forces import model_label
from gnnmd.openmm.platforms import PlatformSpec, resolve_platform
from gnnmd.openmm.system import DEFAULT_ROUTE, ModelLike, create_system, resolve_model
from gnnmd.openmm.topology import openmm_topology
from gnnmd.systems import System, load_system
from gnnmd.units import PS_PER_FS

#: Trajectory formats by file suffix.
TRAJECTORY_FORMATS = (".dcd", ".xtc", ".h5")


def langevin_integrator(settings: LangevinSettings, seed: int = 0) -> openmm.LangevinMiddleIntegrator:
    """OpenMM's BAOAB Langevin integrator at ``settings`` (K, 1/ps, fs); ``seed`` fixes its noise."""
    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_k * openmm.unit.kelvin,
        settings.friction_per_ps / openmm.unit.picosecond,
        settings.timestep_fs * PS_PER_FS * openmm.unit.picosecond,
    )
    integrator.setRandomNumberSeed(int(seed))
    return integrator


def replica_positions(system: System, replicas: int) -> np.ndarray:
    """(replicas × n_beads, 3) nm: every replica at the native structure."""
    return np.tile(np.asarray(system.positions_nm, dtype=np.float64), (replicas, 1))


def trajectory_reporter(path: str | os.PathLike, interval: int) -> Any:
    """A reporter writing every ``interval`` steps to ``path``, chosen by suffix (.dcd, .xtc, .h5)."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"report interval must be an integer >= 1 step, got {interval!r}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".dcd":
        return openmm.app.DCDReporter(str(path), interval)
    if suffix == ".xtc":
        from mdtraj.reporters import XTCReporter

        return XTCReporter(str(path), interval)
    if suffix == ".h5":
        try:
            import tables  # noqa: F401  (mdtraj's HDF5 writer needs PyTables)
        except ImportError as error:
            raise OpenMMSetupError(
                f"{path}: HDF5 trajectories need PyTables (`pip install tables`); or write .dcd or .xtc"
            ) from error
        from mdtraj.reporters import HDF5Reporter

        return HDF5Reporter(str(path), interval)
    raise ValueError(f"{path}: unknown trajectory format {suffix!r}; allowed: {list(TRAJECTORY_FORMATS)}")


class FiniteEnergyReporter:
    """Raises SimulationError when the potential energy or a position stops being finite.

    Args:
        interval: steps between checks.
        beads_per_replica: to name the replicas whose positions went non-finite.
        label: what runs (model and system), for the message.
    """

    def __init__(self, interval: int, beads_per_replica: int, label: str) -> None:
        self.interval = int(interval)
        self.beads_per_replica = int(beads_per_replica)
        self.label = label

    def describeNextReport(self, simulation: openmm.app.Simulation) -> dict:  # noqa: N802 (OpenMM's name)
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": ["positions", "energy"]}

    def report(self, simulation: openmm.app.Simulation, state: openmm.State) -> None:
        energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
        positions = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        finite = np.isfinite(np.asarray(positions)).reshape(-1, self.beads_per_replica * 3).all(axis=1)
        if np.isfinite(energy) and finite.all():
            return
        bad = np.flatnonzero(~finite).tolist()
        raise SimulationError(
            f"{self.label}: non-finite state at step {simulation.currentStep} (potential energy {energy} "
            f"kJ/mol; replicas with non-finite positions: {bad or 'none'}); try a smaller time step"
        )


def _non_finite_replicas(context: openmm.Context, beads_per_replica: int) -> list[int] | str:
    """Replicas whose positions are not finite, or a note when OpenMM refuses to report them."""
    try:
        positions = context.getState(getPositions=True).getPositions(asNumpy=True)
    except openmm.OpenMMException:
        return "unknown (OpenMM refuses to return NaN coordinates)"
    finite = np.isfinite(np.asarray(positions.value_in_unit(openmm.unit.nanometer)))
    return np.flatnonzero(~finite.reshape(-1, beads_per_replica * 3).all(axis=1)).tolist()


class GnnmdSimulation(openmm.app.Simulation):
    """An ``openmm.app.Simulation`` whose ``step`` reports a NaN blow-up as a SimulationError.

    OpenMM stops a run whose coordinates became NaN with a generic OpenMMException
    (CPU platform), and a PythonForce error arrives wrapped in one; this names the
    model, the system, the step range and the replicas affected. Everything else
    is OpenMM's Simulation unchanged.

    Args:
        *args, **kwargs: those of ``openmm.app.Simulation``.
        label: what runs (model and system), for messages.
        beads_per_replica: to name the replicas whose positions went non-finite.
    """

    def __init__(self, *args: Any, label: str, beads_per_replica: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label
        self.beads_per_replica = int(beads_per_replica)

    def step(self, steps: int) -> None:
        """Advance ``steps`` steps; SimulationError if the state turns non-finite."""
        start = self.currentStep
        try:
            super().step(steps)
        except openmm.OpenMMException as error:
            message = str(error)
            if "NaN" not in message and "non-finite" not in message:
                raise
            replicas = _non_finite_replicas(self.context, self.beads_per_replica)
            raise SimulationError(
                f"{self.label}: non-finite state between steps {start} and {start + steps} (replicas with "
                f"non-finite positions: {replicas}); try a smaller time step. OpenMM said: {message}"
            ) from error


def check_initial_energy(context: openmm.Context, label: str) -> float:
    """The potential energy (kJ/mol) at the Context's positions; SimulationError if not finite."""
    try:
        state = context.getState(getEnergy=True)
    except openmm.OpenMMException as error:
        if "non-finite" not in str(error):
            raise
        # The PythonForce route raises inside OpenMM; its message names the model and values.
        raise SimulationError(f"{label}: the initial potential energy is not finite: {error}") from error
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    if not np.isfinite(energy):
        raise SimulationError(f"{label}: the initial potential energy is not finite ({energy} kJ/mol)")
    return energy


def create_simulation(
    system: System | str | os.PathLike,
    model: ModelLike = "default",
    *,
    backend: str = "auto",
    route: str = DEFAULT_ROUTE,
    replicas: int = 1,
    box_nm: np.ndarray | None = None,
    platform: PlatformSpec | str = "auto",
    precision: str | None = None,
    langevin: LangevinSettings | None = None,
    seed: int = 0,
    trajectory: str | os.PathLike | None = None,
    energy_log: str | os.PathLike | None = None,
    report_interval: int = 100,
    check_interval: int | None = None,
) -> openmm.app.Simulation:
    """A Simulation of ``replicas`` copies of ``system`` with ``model``, ready to ``.step()``.

    Args:
        system: a :class:`~gnnmd.systems.System`, or a shipped name or PDB path.
        model: CGPotential, shipped name, checkpoint path or exported file (torch route).
        backend: kernel backend of a model given by name or path; ``"auto"`` (default): the fastest
            accurate one that runs on the platform (tabulated on CPUs where its op library is built,
            else reference; said on stderr). A CGPotential or exported file runs as it is.
        route: ``"torch"`` (TorchForce) or ``"python"`` (PythonForce).
        replicas: non-interacting copies evaluated in one model call.
        box_nm: optional (3, 3) periodic box vectors in nm.
        platform: ``"auto"``, ``"Reference"``, ``"CPU"``, ``"CUDA"`` or a PlatformSpec.
        precision: ``"single"``, ``"mixed"`` (default) or ``"double"`` (see gnnmd.openmm.platforms).
        langevin: time step (fs), temperature (K), friction (1/ps); default 4 fs, 300 K, 1/ps.
        seed: seeds the initial velocities and the thermostat noise.
        trajectory: optional path (.dcd, .xtc or .h5) written every ``report_interval`` steps.
        energy_log: optional CSV path of step, time, energies and temperature.
        report_interval: steps between trajectory frames and log lines.
        check_interval: steps between finite-energy checks (default: ``report_interval``).

    Raises:
        SimulationError: the energy at the native structure is not finite.
        BeadTypeError, TopologyError, OpenMMSetupError, ValueError: see create_system.
    """
    system = system if isinstance(system, System) else load_system(system)
    spec = resolve_platform(platform, precision)
    settings = langevin if langevin is not None else LangevinSettings()
    device = "cuda" if spec.name == "CUDA" else "cpu"
    model = resolve_model(model, backend, device=device, torchscript=route == "torch")
    label = f"model {model_label(model)} on {system.name} x {replicas}"
    omm_system = create_system(
        system.topology, model, route=route, replicas=replicas, box_nm=box_nm, platform=spec
    )
    topology = openmm_topology(system.topology.replicate(replicas), box_nm)
    simulation = GnnmdSimulation(
        topology, omm_system, langevin_integrator(settings, seed), spec.platform(), spec.properties(),
        label=label, beads_per_replica=system.topology.n_beads,
    )  # fmt: skip
    simulation.context.setPositions(replica_positions(system, replicas) * openmm.unit.nanometer)
    # Before the velocities: drawing them evaluates the forces on some integrators.
    check_initial_energy(simulation.context, label)
    simulation.context.setVelocitiesToTemperature(settings.temperature_k * openmm.unit.kelvin, int(seed))
    simulation.reporters.extend(
        default_reporters(trajectory, energy_log, report_interval, check_interval, system, replicas, label)
    )
    return simulation


def default_reporters(
    trajectory: str | os.PathLike | None,
    energy_log: str | os.PathLike | None,
    report_interval: int,
    check_interval: int | None,
    system: System,
    replicas: int,
    label: str,
) -> Sequence[Any]:
    """The finite-energy check first, then the optional energy log and trajectory."""
    reporters: list[Any] = [
        FiniteEnergyReporter(check_interval or report_interval, system.topology.n_beads, label)
    ]
    if energy_log is not None:
        reporters.append(
            openmm.app.StateDataReporter(
                str(energy_log),
                report_interval,
                step=True,
                time=True,
                potentialEnergy=True,
                kineticEnergy=True,
                totalEnergy=True,
                temperature=True,
            )  # fmt: skip
        )
    if trajectory is not None:
        reporters.append(trajectory_reporter(trajectory, report_interval))
    return reporters


def energy_and_forces(context: openmm.Context) -> tuple[float, np.ndarray]:
    """Potential energy (kJ/mol) and forces ((N, 3) float64 kJ/mol/nm) at the Context's positions."""
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    )
    return float(energy), np.asarray(forces, dtype=np.float64)
