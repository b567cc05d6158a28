"""The shipped all-atom model in ASE: its data's units, its recorded error, NVE, BFGS and the example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import pytest
import torch
from ase import Atoms, units
from ase.io import read
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from openmm import unit

from gnnmd.ase import GNNMDCalculator, hydrogen_bond_constraints, pdb_atoms
from gnnmd.data.ala2_allatom import ARRAYS_FILE, PDB_FILE, ala2_allatom_frames, ala2_allatom_topology
from gnnmd.models import load_model
from gnnmd.units import ANGSTROM_PER_NM, NM_PER_ANGSTROM, force_to_kj_per_mol_nm
from tests.conftest import load_script

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ase_md.py"
TEST_FRAMES = slice(1800, 2000)  # never seen in training (scripts/build_ala2_allatom.py)
#: Total-energy bound for NVE, eV: 400 steps of 0.5 fs (0.2 ps) of 22 atoms at 300 K,
#: whose kinetic energy is about 0.7 eV. Measured: about 1 meV (see docs/ase.md).
NVE_MAX_DEVIATION_EV = 0.01


def ala2_frame(index: int) -> Atoms:
    return Atoms(
        symbols=ala2_allatom_topology().bead_types,
        positions=ala2_allatom_frames()[0][index] * ANGSTROM_PER_NM,
    )


def test_data_units_are_angstrom_and_kcal_per_mol_angstrom():
    """AMBER forces (OpenMM, vacuum) on the stored positions read as Å track the stored forces x 41.84.

    The reference MD had explicit solvent, so the match is not exact; a wrong
    length unit gives unphysical geometries and a wrong energy unit a slope
    off by a factor of 4.184 or 10.
    """
    with np.load(ARRAYS_FILE) as arrays:
        positions, forces = arrays["coords"][::100].astype(float), arrays["forces"][::100].astype(float)
    pdb = app.PDBFile(str(PDB_FILE))
    system = app.ForceField("amber14-all.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    platform = openmm.Platform.getPlatformByName("Reference")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    amber = []
    for frame in positions:
        context.setPositions(frame * NM_PER_ANGSTROM)
        state = context.getState(getForces=True)
        amber.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    amber = np.array(amber)
    slope = float((amber * forces).sum() / (forces * forces).sum())
    assert slope == pytest.approx(force_to_kj_per_mol_nm("kcal/mol", "angstrom"), rel=0.05)
    assert np.corrcoef(amber.ravel(), forces.ravel())[0, 1] > 0.95


def test_shipped_model_is_trained_and_its_recorded_test_error_is_real():
    model = load_model("ala2-allatom").double()
    metadata = model.metadata
    assert metadata["trained"] is True and metadata["kind"] == "all-atom"
    assert model.vocabulary == ["C", "H", "N", "O"] and not model.use_priors
    assert model.config.exclusion_order == 0 and model.config.cutoff_nm == 0.5
    assert "proteka @db2ffd8" in metadata["data_provenance"]
    assert metadata["training_command"].startswith("python scripts/build_ala2_allatom.py")
    positions, forces = (array[TEST_FRAMES] for array in ala2_allatom_frames())
    batch = model.pack([ala2_allatom_topology()] * len(positions))
    _, predicted = model.energy_and_forces(torch.tensor(positions.reshape(-1, 3)), batch)
    rmse = float(np.sqrt(np.mean((predicted.numpy().reshape(forces.shape) - forces) ** 2)))
    recorded = metadata["test"]
    assert recorded["test_frames"] == "1800:2000"
    assert rmse == pytest.approx(recorded["test_force_rmse_kj_per_mol_nm"], rel=1e-6)
    assert rmse < 0.35 * recorded["test_force_rms_kj_per_mol_nm"]


def test_nve_total_energy_is_conserved():
    atoms = ala2_frame(1900)
    atoms.set_constraint(hydrogen_bond_constraints(atoms))
    atoms.calc = GNNMDCalculator(model="ala2-allatom", device="cpu")
    thermalize_momenta(atoms, 300.0, rng=np.random.default_rng(0))
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    energies = []
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dynamics.run(400)
    deviation = np.abs(np.array(energies) - energies[0])
    assert atoms.get_kinetic_energy() > 0.2  # eV: the molecule is moving
    assert deviation.max() < NVE_MAX_DEVIATION_EV


def test_bfgs_converges_on_ala2():
    atoms = pdb_atoms(PDB_FILE)
    atoms.set_constraint(hydrogen_bond_constraints(atoms))
    atoms.calc = GNNMDCalculator(model="ala2-allatom", device="cpu")
    start = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.05, steps=500)
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.05
    assert atoms.get_potential_energy() < start


def test_example_relaxes_runs_langevin_and_writes_a_trajectory(tmp_path):
    example = load_script(EXAMPLE)
    assert example.main(["--steps", "40", "--every", "10", "--fmax", "0.2", "--device", "cpu",
                         "--out", str(tmp_path)]) == 0  # fmt: skip
    frames = read(tmp_path / "md.traj", index=":")
    assert len(frames) == 5 and len(frames[0]) == 22
    assert np.isfinite(frames[-1].get_potential_energy())
    rows = (tmp_path / "md.csv").read_text().splitlines()
    assert rows[0] == "time_ps,potential_ev,kinetic_ev,temperature_k" and len(rows) == 6
