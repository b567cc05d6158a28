"""Dynamics in OpenMM with a gnnmd force: energy conservation, Langevin stability, trajectories, NaN."""

from __future__ import annotations

import math

import mdtraj
import numpy as np
import openmm
import openmm.unit
import pytest

from gnnmd.engine import LangevinSettings
from gnnmd.errors import OpenMMSetupError, SimulationError
from gnnmd.models import load_model
from gnnmd.openmm import PlatformSpec, create_simulation, create_system, trajectory_reporter
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K
from tests.integration.test_openmm_forces import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Verlet at 0.5 fs, 300 steps, chignolin with the shipped model in double precision: the
#: total energy stays within this band (measured spread about 0.035 kJ/mol over 500 steps,
#: against a kinetic energy of about 120 kJ/mol; the spread grows as dt², 0.6 kJ/mol at 2 fs).
VERLET_BOUND_KJ_PER_MOL = 0.1


def total_energy(context: openmm.Context) -> float:
    state = context.getState(getEnergy=True)
    return (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(
        openmm.unit.kilojoule_per_mole
    )


def test_verlet_conserves_energy(chignolin):
    spec = PlatformSpec("CPU", "double")
    system = create_system(chignolin.topology, "default", platform=spec)
    integrator = openmm.VerletIntegrator(0.5e-3 * openmm.unit.picosecond)
    context = openmm.Context(system, integrator, spec.platform())
    context.setPositions(chignolin.positions_nm * openmm.unit.nanometer)
    context.setVelocitiesToTemperature(300.0 * openmm.unit.kelvin, 1)
    energies = [total_energy(context)]
    for _ in range(30):
        integrator.step(10)
        energies.append(total_energy(context))
    kinetic = (
        context.getState(getEnergy=True).getKineticEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    )
    assert kinetic > 50.0  # the beads do move
    assert max(energies) - min(energies) < VERLET_BOUND_KJ_PER_MOL


def test_langevin_chignolin_stays_finite(chignolin, tmp_path):
    simulation = create_simulation(
        chignolin, "default", platform="CPU", langevin=LangevinSettings(4.0), seed=3,
        trajectory=tmp_path / "run.dcd", report_interval=500,
    )  # fmt: skip
    simulation.step(2000)
    state = simulation.context.getState(getEnergy=True, getPositions=True)
    positions = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
    assert np.isfinite(positions).all() and simulation.currentStep == 2000
    assert math.isfinite(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
    kinetic = state.getKineticEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    temperature = 2.0 * kinetic / (3 * chignolin.topology.n_beads * BOLTZMANN_KJ_PER_MOL_K)
    assert 100.0 < temperature < 700.0
    # The protein stays in one piece: every bond shorter than 0.3 nm.
    bonds = chignolin.topology.bonds
    lengths = np.linalg.norm(positions[bonds[:, 0]] - positions[bonds[:, 1]], axis=1)
    assert lengths.max() < 0.3


@pytest.mark.parametrize("suffix", [".dcd", ".xtc"])
def test_trajectory_reads_back_with_mdtraj(chignolin, tmp_path, suffix):
    path = tmp_path / f"traj{suffix}"
    simulation = create_simulation(
        chignolin, "default", platform="CPU", replicas=2, trajectory=path, report_interval=5
    )
    simulation.step(20)
    final = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)
    del simulation  # closes the file
    topology = chignolin.topology.replicate(2).to_mdtraj()
    frames = mdtraj.load(str(path), top=topology)
    assert frames.n_frames == 4 and frames.n_atoms == 2 * chignolin.topology.n_beads
    np.testing.assert_allclose(frames.xyz[-1], final.value_in_unit(openmm.unit.nanometer), atol=2e-3)
    assert [r.name for r in frames.topology.residues][:3] == ["TYR", "TYR", "ASP"]


def test_hdf5_needs_pytables(tmp_path):
    try:
        import tables  # noqa: F401
    except ImportError:
        with pytest.raises(OpenMMSetupError, match="PyTables"):
            trajectory_reporter(tmp_path / "t.h5", 10)
    else:
        assert type(trajectory_reporter(tmp_path / "t.h5", 10)).__name__ == "HDF5Reporter"
    with pytest.raises(ValueError, match=r"unknown trajectory format '\.trr'"):
        trajectory_reporter(tmp_path / "t.trr", 10)


def nan_model():
    model = load_model("default")
    model.network.readout[-1].bias.data.fill_(float("nan"))
    return model


def test_nan_model_is_refused_before_the_first_step(chignolin):
    with pytest.raises(SimulationError, match=r"initial potential energy is not finite \(nan kJ/mol\)"):
        create_simulation(chignolin, nan_model(), platform="CPU")


def test_python_route_names_a_non_finite_energy(chignolin):
    with pytest.raises(
        SimulationError, match=r"initial potential energy is not finite: .*returned a non-finite"
    ):
        create_simulation(chignolin, nan_model(), route="python", platform="CPU")


def collapse_bead(simulation, topology, replica: int) -> None:
    """Put bead 4 of ``replica`` onto bead 3: finite energy now, NaN forces after a step."""
    state = simulation.context.getState(getPositions=True)
    positions = np.array(state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
    n = topology.n_beads
    positions[replica * n + 4] = positions[replica * n + 3]
    simulation.context.setPositions(positions * openmm.unit.nanometer)


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_non_finite_state_stops_the_run_with_a_clear_error(chignolin, platform):
    """Reference: the finite-energy reporter names the replica; CPU: OpenMM's NaN check, reworded."""
    simulation = create_simulation(chignolin, "default", platform=platform, replicas=3, report_interval=2)
    simulation.step(2)
    collapse_bead(simulation, chignolin.topology, replica=1)
    expected = r"\[1\]" if platform == "Reference" else "Particle coordinate is NaN"
    with pytest.raises(SimulationError, match=rf"chignolin x 3: non-finite state .*{expected}"):
        simulation.step(2)
