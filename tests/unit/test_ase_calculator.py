"""The ASE calculator: same numbers as the model, exact derivatives, periodic cells, caching, bad input."""

from __future__ import annotations

import ase.units
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.stress import voigt_6_to_full_3x3_stress

from gnnmd.ase import (
    BEAD_TYPES_ARRAY,
    BONDS_INFO,
    DeviceUnavailableError,
    GNNMDCalculator,
    StressUnavailableError,
    cg_atoms,
)
from gnnmd.ase.convert import cell_widths, lower_triangular
from gnnmd.data.ala2_allatom import ala2_allatom_frames, ala2_allatom_topology
from gnnmd.errors import AtomsError, BeadTypeError, ModelNotFoundError
from gnnmd.nn.potential import CGPotential, PotentialConfig

# Small tensors: one intra-op thread is fastest, and keeps finite differences quick on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")

# Factors from ASE's own constants, not gnnmd's (ASE's CODATA 2014 eV differs from OpenMM's
# CODATA 2018 by 8e-9 relative; the comparisons below allow for it).
EV = ase.units.eV / (ase.units.kJ / ase.units.mol)  # kJ/mol per eV
EV_PER_A = (ase.units.eV / ase.units.Angstrom) / (ase.units.kJ / ase.units.mol / ase.units.nm)  # kJ/mol/nm
ELEMENTS = ["C", "H", "N", "O"]
ALLATOM_CONFIG = PotentialConfig(
    hidden_channels=16, num_filters=16, num_interactions=2, num_rbf=12, cutoff_nm=0.5,
    activation="ssp", exclusion_order=0, use_priors=False,
)  # fmt: skip


def allatom_model(seed: int = 1) -> CGPotential:
    """A float64 element model whose readout is large enough for every term to show."""
    generator = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = CGPotential(ALLATOM_CONFIG, ELEMENTS, None).double()
    finally:
        torch.random.set_rng_state(state)
    with torch.no_grad():
        model.network.readout[-1].weight.normal_(0.0, 50.0, generator=generator)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return allatom_model()


@pytest.fixture(scope="module")
def frames():
    return ala2_allatom_frames()[0]  # (2000, 22, 3) nm


def ala2(frames, index: int = 0) -> Atoms:
    symbols = ala2_allatom_topology().bead_types
    return Atoms(symbols=symbols, positions=frames[index] * (ase.units.nm / ase.units.Angstrom))


def periodic_liquid(seed: int = 0, count: int = 28) -> Atoms:
    """Atoms in a general triclinic cell just wider than twice the cutoff: many pairs cross its faces."""
    rng = np.random.default_rng(seed)
    cell = np.array([[10.6, 0.0, 0.0], [2.5, 10.9, 0.0], [-1.8, 1.6, 11.2]])
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a general orientation, not lower triangular
    cell = cell @ rotation
    assert cell_widths(cell).min() > 10.0
    scaled, kept = rng.random((400, 3)), []
    for candidate in scaled:
        trial = np.array(kept + [candidate])
        delta = trial[:-1] - candidate
        delta -= np.round(delta)
        if not len(kept) or np.linalg.norm(delta @ cell, axis=1).min() > 1.3:
            kept.append(candidate)
        if len(kept) == count:
            break
    symbols = [ELEMENTS[i % 4] for i in range(count)]
    return Atoms(symbols=symbols, scaled_positions=np.array(kept), cell=cell, pbc=True)


# -- same numbers as the model, in ASE units ----------------------------------------------------------


def test_energy_and_forces_equal_the_models(model, frames):
    atoms = ala2(frames)
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    batch = model.pack([ala2_allatom_topology()])
    energy, forces = model.energy_and_forces(torch.tensor(frames[0]), batch)
    assert atoms.get_potential_energy() == pytest.approx(float(energy[0]) / EV, rel=1e-7)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy() / EV_PER_A, rtol=1e-7, atol=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    assert np.abs(atoms.get_forces()).max() > 0.01  # eV/Å: the comparison is not between zeros


def test_forces_are_minus_the_energy_gradient(model, frames):
    atoms = ala2(frames, 7)
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numerical, rtol=1e-6, atol=1e-8)


def test_cg_atoms_give_the_cg_models_numbers(small_model, chignolin):
    atoms = cg_atoms(chignolin)
    assert list(atoms.arrays[BEAD_TYPES_ARRAY]) == list(chignolin.topology.bead_types)
    np.testing.assert_array_equal(atoms.info[BONDS_INFO], chignolin.topology.bonds)
    np.testing.assert_allclose(atoms.get_masses(), chignolin.topology.masses_amu)
    atoms.calc = GNNMDCalculator(model=small_model, device="cpu")
    positions = torch.tensor(chignolin.positions_nm)
    energy, forces = small_model.energy_and_forces(positions, small_model.pack([chignolin.topology]))
    assert atoms.get_potential_energy() == pytest.approx(float(energy[0]) / EV, rel=1e-7)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy() / EV_PER_A, rtol=1e-7, atol=1e-12)


def test_float32_is_close_to_float64(model, frames):
    atoms = ala2(frames, 3)
    single = GNNMDCalculator(model=model, device="cpu", dtype="float32")
    double = GNNMDCalculator(model=model, device="cpu", dtype=torch.float64)
    assert single.model is not model and next(model.parameters()).dtype == torch.float64
    assert double.model is model  # already in place: no copy
    assert single.get_potential_energy(atoms) == pytest.approx(double.get_potential_energy(atoms), rel=1e-5)
    assert single.parameters["dtype"] == "float32" and double.parameters["device"] == "cpu"


# -- periodic cells and stress --------------------------------------------------------------------------


def test_stress_equals_the_finite_difference_stress(model):
    atoms = periodic_liquid()
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    stress = atoms.get_stress()
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-6), rtol=1e-5, atol=1e-9)
    assert np.abs(stress).max() > 1e-4
    full = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(full, full.T)


def test_pairs_across_the_cell_faces_count(model):
    atoms = periodic_liquid()
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    periodic = atoms.get_potential_energy()
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numerical, rtol=1e-6, atol=1e-8)
    atoms.pbc = False
    assert abs(atoms.get_potential_energy() - periodic) > 1e-3


def test_supercell_is_extensive(model):
    """With the cutoff inside half the cell, a 2x1x2 supercell has twice-twice the energy, the same stress."""
    atoms = periodic_liquid()
    calc = GNNMDCalculator(model=model, device="cpu")
    energy, forces, stress = calc.get_potential_energy(atoms), calc.get_forces(atoms), calc.get_stress(atoms)
    supercell = atoms.repeat((2, 1, 2))
    assert calc.get_potential_energy(supercell) == pytest.approx(4 * energy, rel=1e-10)
    np.testing.assert_allclose(calc.get_forces(supercell), np.tile(forces, (4, 1)), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(calc.get_stress(supercell), stress, rtol=1e-8, atol=1e-12)


def test_rotated_and_reshaped_cells_give_the_same_physics(model):
    atoms = periodic_liquid()
    calc = GNNMDCalculator(model=model, device="cpu")
    energy, forces, stress = calc.get_potential_energy(atoms), calc.get_forces(atoms), calc.get_stress(atoms)
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rotation)
    rotated.positions = atoms.positions @ rotation
    assert calc.get_potential_energy(rotated) == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(calc.get_forces(rotated), forces @ rotation, atol=1e-10)
    full = voigt_6_to_full_3x3_stress(calc.get_stress(rotated))
    expected = rotation.T @ voigt_6_to_full_3x3_stress(stress) @ rotation  # σ' = Rᵀ σ R for r' = r R
    np.testing.assert_allclose(full, expected, atol=1e-12)
    skewed = atoms.copy()  # the same lattice in a skewed basis: c' = c + 2a - b
    a, b, c = atoms.cell.array
    skewed.set_cell([a, b, c + 2 * a - b], scale_atoms=False)
    assert calc.get_potential_energy(skewed) == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(calc.get_forces(skewed), forces, atol=1e-10)
    np.testing.assert_allclose(calc.get_stress(skewed), stress, atol=1e-12)


def test_cg_protein_in_a_periodic_box(small_model, chignolin):
    """Bonded priors use minimum image too: wrapping beads into a large box changes nothing."""
    calc = GNNMDCalculator(model=small_model, device="cpu")
    atoms = cg_atoms(chignolin)
    energy, forces = calc.get_potential_energy(atoms), calc.get_forces(atoms)
    boxed = atoms.copy()
    boxed.cell, boxed.pbc = [30.0, 31.0, 32.0], True
    boxed.positions += 28.0  # most beads outside the cell until wrapped
    boxed.wrap()
    boxed.calc = calc
    assert boxed.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    np.testing.assert_allclose(boxed.get_forces(), forces, atol=1e-12)
    stress = boxed.get_stress()
    np.testing.assert_allclose(stress, calculate_numerical_stress(boxed, eps=1e-6), rtol=1e-5, atol=1e-10)
    assert np.abs(stress).max() > 1e-5


def test_lower_triangular_frame():
    cell = np.array([[3.0, 1.0, -2.0], [0.5, 4.0, 1.0], [1.0, -1.0, 5.0]])
    box, rotation = lower_triangular(cell)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(box, cell @ rotation, atol=1e-12)
    assert box[0, 1] == box[0, 2] == box[1, 2] == 0.0 and (np.diag(box) > 0).all()


# -- ASE caching ------------------------------------------------------------------------------------------


class CountingModel(CGPotential):
    calls = 0

    def forward(self, positions, batch, box=None):
        type(self).calls += 1
        return super().forward(positions, batch, box)


def test_results_are_cached_until_the_atoms_change(small_model, chignolin):
    counting = CountingModel(small_model.config, small_model.vocabulary, small_model.priors)
    counting.network.load_state_dict(small_model.network.state_dict())
    atoms = cg_atoms(chignolin)
    atoms.calc = GNNMDCalculator(model=counting.double(), device="cpu")
    CountingModel.calls = 0
    atoms.get_forces(), atoms.get_potential_energy(), atoms.get_forces()
    assert CountingModel.calls == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_potential_energy()
    assert CountingModel.calls == 2
    # Bead types and bonds are part of the state too (ASE's own check ignores them).
    assert atoms.calc.check_state(atoms) == []
    changed = atoms.copy()
    changed.arrays[BEAD_TYPES_ARRAY][0] = changed.arrays[BEAD_TYPES_ARRAY][2]
    assert atoms.calc.check_state(changed) == ["bead_types"]
    changed = atoms.copy()
    changed.info[BONDS_INFO] = changed.info[BONDS_INFO][1:]
    assert atoms.calc.check_state(changed) == ["bead_bonds"]


# -- batches --------------------------------------------------------------------------------------------


def test_batch_equals_one_by_one(model, frames):
    ala2_frames = [ala2(frames, i) for i in (0, 500, 1500)]
    methane = Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                      [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])  # fmt: skip
    images = [ala2_frames[0], periodic_liquid(1), methane, ala2_frames[1], periodic_liquid(2), ala2_frames[2]]
    calc = GNNMDCalculator(model=model, device="cpu")
    single = []
    for atoms in images:
        result = {"energy": calc.get_potential_energy(atoms), "forces": calc.get_forces(atoms)}
        single.append(result)
    for chunk_size in (None, 2):
        batched = calc.calculate_batch(images, chunk_size=chunk_size)
        assert len(batched) == len(images)
        for one, many in zip(single, batched, strict=True):
            assert set(many) == {"energy", "forces"}
            assert many["energy"] == pytest.approx(one["energy"], rel=1e-10, abs=1e-12)
            np.testing.assert_allclose(many["forces"], one["forces"], rtol=1e-8, atol=1e-11)
    periodic = [images[1], images[4]]
    stresses = calc.calculate_batch(periodic, properties=("stress", "free_energy"))
    for atoms, result in zip(periodic, stresses, strict=True):
        np.testing.assert_allclose(result["stress"], calc.get_stress(atoms), rtol=1e-8, atol=1e-12)


def test_batch_rejects_bad_requests(model, frames):
    calc = GNNMDCalculator(model=model, device="cpu")
    with pytest.raises(ValueError, match="unknown properties \\['dipole'\\]"):
        calc.calculate_batch([ala2(frames)], properties=("energy", "dipole"))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        calc.calculate_batch([ala2(frames)], chunk_size=0)
    with pytest.raises(StressUnavailableError):
        calc.calculate_batch([periodic_liquid(), ala2(frames)], properties=("stress",))


# -- bad input ------------------------------------------------------------------------------------------


def test_unknown_element_is_named(model, frames):
    atoms = ala2(frames)
    atoms.symbols[9] = "S"
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    with pytest.raises(BeadTypeError, match="element 'S' of atom 9 is not in model .*'C', 'H', 'N', 'O'"):
        atoms.get_potential_energy()


def test_bead_type_mismatch_is_named(small_model, chignolin):
    atoms = cg_atoms(chignolin)
    atoms.arrays[BEAD_TYPES_ARRAY][4] = "XYZ.CA"
    atoms.calc = GNNMDCalculator(model=small_model, device="cpu")
    with pytest.raises(BeadTypeError, match="bead type 'XYZ.CA' of atom 4"):
        atoms.get_forces()


def test_cg_model_needs_bead_types_and_bonds(small_model, chignolin, model, frames):
    calc = GNNMDCalculator(model=small_model, device="cpu")
    with pytest.raises(AtomsError, match="carry no atoms.arrays\\['bead_types'\\].*cg_atoms"):
        calc.get_potential_energy(ala2(frames))
    unbonded = cg_atoms(chignolin)
    del unbonded.info[BONDS_INFO]
    with pytest.raises(
        AtomsError, match="bonded priors but these Atoms carry no atoms.info\\['bead_bonds'\\]"
    ):
        calc.get_potential_energy(unbonded)
    broken = cg_atoms(chignolin)
    broken.info[BONDS_INFO] = np.array([[0, 49]])
    with pytest.raises(AtomsError, match="distinct atoms in 0..48"):
        calc.get_potential_energy(broken)
    with pytest.raises(AtomsError, match="carry CG bead types .* all-atom model"):
        GNNMDCalculator(model=model, device="cpu").get_potential_energy(cg_atoms(chignolin))


def test_stress_without_a_periodic_cell_raises(model, frames):
    atoms = ala2(frames)
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    with pytest.raises(StressUnavailableError, match="stress needs a 3-D periodic cell") as caught:
        atoms.get_stress()
    assert isinstance(caught.value, PropertyNotImplementedError)  # what ASE code expects
    atoms.cell = [20.0, 20.0, 20.0]
    atoms.pbc = [True, True, False]
    with pytest.raises(StressUnavailableError, match="pbc=\\[True, True, False\\]"):
        atoms.get_stress()
    with pytest.raises(AtomsError, match="not periodicity in some directions only"):
        atoms.get_potential_energy()


def test_cell_narrower_than_twice_the_cutoff_raises(model):
    atoms = periodic_liquid()
    atoms.set_cell(atoms.cell.array * 0.9, scale_atoms=True)
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    with pytest.raises(AtomsError, match="narrowest width is 0.9.* nm, less than twice the model's cutoff"):
        atoms.get_potential_energy()
    atoms.cell = np.zeros((3, 3))
    with pytest.raises(AtomsError, match="not finite with a non-zero volume"):
        atoms.get_potential_energy()


def test_nan_positions_raise(model, frames):
    atoms = ala2(frames)
    atoms.positions[3, 1] = np.nan
    atoms.calc = GNNMDCalculator(model=model, device="cpu")
    with pytest.raises(AtomsError, match="position of atom 3 is .*nan.* \\(not finite\\)"):
        atoms.get_forces()


def test_constructor_arguments_are_checked(model):
    with pytest.raises(TypeError):
        GNNMDCalculator(model=model, cutoff=0.5)  # unknown keyword
    with pytest.raises(ValueError, match="dtype 'float16' is not one of"):
        GNNMDCalculator(model=model, dtype="float16")
    with pytest.raises(ValueError, match="device 'tpu' is not one of"):
        GNNMDCalculator(model=model, device="tpu")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    with pytest.raises(DeviceUnavailableError, match=f"device '{missing}' was requested"):
        GNNMDCalculator(model=model, device=missing)
    with pytest.raises(ModelNotFoundError):
        GNNMDCalculator(model="no-such-model")
    with pytest.raises(TypeError, match="got int"):
        GNNMDCalculator(model=3)
    calc = GNNMDCalculator(model=model, device="cpu")
    with pytest.raises(ValueError, match="cannot be changed after construction"):
        calc.set(model="default")


def test_constructor_leaves_global_torch_state_alone(model):
    before = (torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state())
    GNNMDCalculator(model=model, device="cpu", dtype="float32")
    after = (torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state())
    assert before[:2] == after[:2] and torch.equal(before[2], after[2])


def test_untrained_shipped_model_warns(monkeypatch):
    from gnnmd import models

    monkeypatch.setattr(models, "_UNTRAINED_WARNED", set())  # once per process: start afresh
    with pytest.warns(models.UntrainedModelWarning, match="'default' .* is UNTRAINED"):
        GNNMDCalculator(model="default", device="cpu")


@pytest.mark.parametrize("fmt", ["traj", "extxyz", "proteindatabank"])
def test_cg_atoms_survive_standard_formats(tmp_path, fmt):
    """Written with ase.io and read back, CG Atoms evaluate as the original at the stored positions."""
    import ase.io

    from gnnmd.ase import cg_atoms
    from gnnmd.systems import load_system

    atoms = cg_atoms(load_system("chignolin"))
    atoms.positions += np.random.default_rng(3).normal(0.0, 0.1, atoms.positions.shape)
    path = tmp_path / f"frame.{ {'traj': 'traj', 'extxyz': 'xyz', 'proteindatabank': 'pdb'}[fmt] }"
    ase.io.write(path, atoms, format=fmt)
    back = ase.io.read(path, format=fmt)
    assert "bead_types" not in back.arrays or fmt == "extxyz"  # the format itself lost them (but extxyz)
    original = atoms.copy()
    original.positions = back.positions  # PDB keeps 3 decimals of Å
    original.calc = GNNMDCalculator(model="chignolin")
    back.calc = GNNMDCalculator(model="chignolin")
    assert back.get_potential_energy() == pytest.approx(original.get_potential_energy(), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(back.get_forces(), original.get_forces(), rtol=1e-9, atol=1e-9)
    from gnnmd.ase import restore_cg

    np.testing.assert_array_equal(restore_cg(back).arrays["bead_types"], atoms.arrays["bead_types"])


def test_a_simulate_topology_pdb_reads_back_as_cg_atoms(tmp_path):
    """The <system>.pdb that `gnnmd simulate` writes (mdtraj) is CG Atoms for ASE, bonds included."""
    import ase.io

    from gnnmd.ase import restore_cg
    from gnnmd.sim.reporters import save_frame_pdb
    from gnnmd.systems import load_system

    system = load_system("chignolin")
    save_frame_pdb(tmp_path / "chignolin.pdb", system.topology, system.positions_nm)
    atoms = restore_cg(ase.io.read(tmp_path / "chignolin.pdb"))
    assert tuple(atoms.arrays["bead_types"]) == system.topology.bead_types
    np.testing.assert_array_equal(np.asarray(atoms.info["bead_bonds"]), system.topology.bonds)
