"""Reference energies in datasets: stored in step with the frames, imported in kJ/mol, generated
consistently with the forces at atom resolution, and resumed exactly."""

from __future__ import annotations

import h5py
import numpy as np
import openmm
import pytest
from openmm import unit

from gnnmd.cli import main
from gnnmd.data.allatom import AllAtomSettings, Generator
from gnnmd.data.dataset import DatasetError, ForceDataset, append_frames, write_molecule
from gnnmd.data.importers import import_arrays
from gnnmd.units import KJ_PER_KCAL


def frames(system, count=5, seed=0):
    """Random (count, n, 3) positions nm near the native structure, forces kJ/mol/nm, energies kJ/mol."""
    rng = np.random.default_rng(seed)
    x = system.positions_nm[None] + rng.normal(0, 0.01, (count, system.topology.n_beads, 3))
    return x, rng.normal(0, 100, x.shape), rng.normal(-500.0, 30.0, count)


def test_write_molecule_stores_energies_resizable_float64(tmp_path, chignolin):
    path = tmp_path / "d.h5"
    x, f, e = frames(chignolin)
    write_molecule(path, chignolin.topology, x, f, energies_kj_per_mol=e)
    with h5py.File(path, "r") as file:
        stored = file["molecules/chignolin/energies"]
        assert stored.dtype == np.float64 and stored.maxshape == (None,) and stored.chunks is not None
    dataset = ForceDataset(path)
    assert dataset.has_energies == [True]
    np.testing.assert_array_equal(dataset.energies(0), e)  # float64 round trip: exact
    np.testing.assert_array_equal(dataset.energies(0, [3, 1]), e[[1, 3]])


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda e: e[:-1], r"energies of 'chignolin' have shape \(4,\), expected \(5,\)"),
        (lambda e: e[:, None], r"energies of 'chignolin' have shape \(5, 1\)"),
        (lambda e: np.where(np.arange(5) == 2, np.nan, e), "molecule 'chignolin', field 'energies', frame 2: "
         "value nan is not finite"),
    ],
)  # fmt: skip
def test_write_molecule_refuses_bad_energies(tmp_path, chignolin, bad, message):
    path = tmp_path / "d.h5"
    x, f, e = frames(chignolin)
    with pytest.raises(DatasetError, match=rf"d\.h5: {message}"):
        write_molecule(path, chignolin.topology, x, f, energies_kj_per_mol=bad(e))
    if path.exists():
        with h5py.File(path, "r") as file:
            assert "molecules/chignolin" not in file  # nothing half-written


def test_append_frames_keeps_energies_in_step(tmp_path, chignolin, villin):
    path = tmp_path / "d.h5"
    x, f, e = frames(chignolin)
    assert append_frames(path, chignolin.topology, x[:2], f[:2], e[:2]) == 2  # creates the molecule
    assert append_frames(path, chignolin.topology, x[2:], f[2:], e[2:]) == 5
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["molecules/chignolin/energies"][()], e)
        np.testing.assert_allclose(file["molecules/chignolin/coordinates"][()], x, rtol=1e-6)
    # Existing callers (no energies) keep working on molecules without energies.
    xv, fv, ev = frames(villin, count=3)
    assert append_frames(path, villin.topology, xv[:1], fv[:1]) == 1
    assert append_frames(path, villin.topology, xv[1:], fv[1:]) == 3

    def counts():
        with h5py.File(path, "r") as file:
            return {
                f"{m}/{label}": file[f"molecules/{m}/{label}"].shape[0]
                for m in ("chignolin", "villin")
                for label in ("coordinates", "forces", "energies")
                if label in file[f"molecules/{m}"]
            }

    before = counts()
    with pytest.raises(DatasetError, match=r"d\.h5: molecule 'chignolin' stores 'energies'; .* bring none"):
        append_frames(path, chignolin.topology, x, f)
    with pytest.raises(DatasetError, match=r"d\.h5: molecule 'villin' stores no 'energies'"):
        append_frames(path, villin.topology, xv, fv, ev)
    with pytest.raises(
        DatasetError, match=r"d\.h5: energies of 'chignolin' have shape \(4,\), expected \(5,\)"
    ):
        append_frames(path, chignolin.topology, x, f, e[:4])
    with pytest.raises(
        DatasetError, match=r"d\.h5: molecule 'chignolin', field 'energies', frame 5: value inf"
    ):
        append_frames(path, chignolin.topology, x, f, np.full(5, np.inf))
    with pytest.raises(
        DatasetError, match=r"d\.h5: molecule 'chignolin', field 'forces' has shape \(4, 49, 3\)"
    ):
        append_frames(path, chignolin.topology, x, f[:4], e)
    assert counts() == before  # a refused append writes nothing


def test_import_arrays_converts_energies(tmp_path, chignolin, capsys):
    x, f, e = frames(chignolin)
    paths = {name: tmp_path / f"{name}.npy" for name in ("x", "f", "e", "short")}
    for name, array in (("x", x * 10.0), ("f", f / KJ_PER_KCAL / 10.0), ("e", e / KJ_PER_KCAL)):
        np.save(paths[name], array)  # Å, kcal/mol/Å, kcal/mol
    np.save(paths["short"], e[:3])
    output = tmp_path / "d.h5"
    common = ["--coordinates", str(paths["x"]), "--forces", str(paths["f"])]
    units = ["--length-unit", "angstrom", "--energy-unit", "kcal/mol"]
    assert main(["data", "import-arrays", "chignolin", *common, "--energies", str(paths["e"]), *units,
                 "-o", str(output)]) == 0  # fmt: skip
    dataset = ForceDataset(output)
    np.testing.assert_allclose(dataset.energies(0), e, rtol=1e-12)  # kcal/mol x 4.184 = kJ/mol
    np.testing.assert_allclose(dataset.frames(0)[1], f, rtol=1e-5)
    # Without --energies: no energies stored, as before.
    assert main(["data", "import-arrays", "chignolin", *common, *units, "-o", str(tmp_path / "n.h5")]) == 0
    assert ForceDataset(tmp_path / "n.h5").has_energies == [False]
    with pytest.raises(DatasetError, match=r"short\.npy has shape \(3,\) but .*x\.npy has \(5, 49, 3\)"):
        import_arrays(
            tmp_path / "m.h5", chignolin.topology, paths["x"], paths["f"], "angstrom", "kcal/mol",
            energies_path=paths["short"],
        )  # fmt: skip
    capsys.readouterr()
    assert main(["data", "import-arrays", "chignolin", *common, "--energies", str(paths["short"]), *units,
                 "-o", str(tmp_path / "m.h5")]) == 2  # fmt: skip
    assert "short.npy" in capsys.readouterr().err


def test_settings_per_resolution_and_old_cg_checkpoints_still_match():
    # The fingerprint of cg settings is what checkpoints recorded before resolutions existed.
    assert AllAtomSettings(force_map="hydrogens").fingerprint() == (
        "{'temperature_k': 300.0, 'timestep_fs': 2.0, 'friction_per_ps': 1.0, 'frame_interval_ps': 1.0, "
        "'forcefield': 'amber14-gbn2', 'platform': 'CPU', 'chunk_frames': 50, 'seed': 1}"
    )
    assert AllAtomSettings().fingerprint().endswith("'seed': 1, 'force_map': 'groups'}")
    assert AllAtomSettings().constraints == "hbonds"
    atom = AllAtomSettings(resolution="atom")
    assert (atom.timestep_fs, atom.constraints, atom.steps_per_frame) == (1.0, "none", 1000)
    assert "'resolution': 'atom'" in atom.fingerprint() and "'constraints': 'none'" in atom.fingerprint()
    assert "force_map" not in atom.fingerprint()  # atom resolution maps no forces
    assert AllAtomSettings(resolution="atom", timestep_fs=0.5).steps_per_frame == 2000
    with pytest.raises(ValueError, match="X-H stretching"):
        AllAtomSettings(resolution="atom", constraints="hbonds")
    with pytest.raises(ValueError, match="unknown resolution"):
        AllAtomSettings(resolution="residue")


ATOM = AllAtomSettings(
    platform="Reference", frame_interval_ps=0.004, chunk_frames=2, seed=3, resolution="atom"
)


@pytest.fixture(scope="module")
def atom_run(chignolin, tmp_path_factory):
    """Four atom-resolution frames of chignolin (4 fs apart, 1 fs steps), uninterrupted."""
    path = tmp_path_factory.mktemp("atom") / "whole.h5"
    generator = Generator(chignolin, path, ATOM)
    assert generator.run(4) == 4
    return generator, path


def test_atom_resolution_records_every_atom_with_element_types_and_energies(atom_run):
    generator, path = atom_run
    dataset = ForceDataset(path)
    assert dataset.molecules == ["chignolin_allatom"] and dataset.has_energies == [True]
    (topology,) = dataset.topologies
    atoms = list(generator.topology.atoms())
    assert topology.n_beads == len(atoms) == 166  # hydrogens included
    assert topology.bead_types == tuple(a.element.symbol for a in atoms)
    assert set(topology.bead_types) == {"C", "H", "N", "O"} and topology.bead_types.count("H") > 60
    assert len(topology.bonds) == 0
    system = generator.context.getSystem()
    masses = [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(len(atoms))]
    np.testing.assert_array_equal(topology.masses_amu, masses)  # the masses the dynamics used
    assert system.getNumConstraints() == 0  # X-H bonds free to stretch
    energies = dataset.energies(0)
    assert energies.shape == (4,) and np.isfinite(energies).all() and np.ptp(energies) > 0
    x, f = dataset.frames(0)
    assert x.shape == f.shape == (4, 166, 3) and np.abs(f).mean() > 10.0


def test_atom_energies_and_forces_are_consistent(atom_run):
    """On each recorded frame, a central difference of the energy along a random direction is -F·d."""
    generator, path = atom_run
    dataset = ForceDataset(path)
    coordinates, forces = dataset.frames(0)
    energies = dataset.energies(0)
    context = openmm.Context(
        generator.context.getSystem(),
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )

    def energy(positions):
        context.setPositions(positions)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    rng = np.random.default_rng(11)
    step_nm = 1e-4
    for x, f, e in zip(coordinates.astype(np.float64), forces.astype(np.float64), energies, strict=True):
        direction = rng.normal(size=x.shape)
        direction /= np.linalg.norm(direction)
        plus, minus = energy(x + step_nm * direction), energy(x - step_nm * direction)
        slope = (plus - minus) / (2 * step_nm)
        expected = -np.sum(f * direction)
        assert abs(expected) > 50.0  # a test that can fail
        # Positions are stored as float32: their rounding moves -F·d by a few 0.01 kJ/mol/nm.
        assert abs(slope - expected) < 1e-4 * abs(expected) + 0.2, (slope, expected)
        # The recorded energy is that of the recorded (float32-rounded) positions.
        assert abs(energy(x) - e) < 0.01, (energy(x), e)
        assert abs(0.5 * (plus + minus) - e) < 0.01


def stored(path, molecule):
    """Coordinates, forces and energies of ``molecule`` as stored, read with a handle closed afterwards."""
    with h5py.File(path, "r") as file:
        group = file[f"molecules/{molecule}"]
        return tuple(group[label][()] for label in ("coordinates", "forces", "energies"))


def test_interrupted_atom_run_resumes_exactly_beside_cg_frames(atom_run, chignolin, tmp_path):
    generator, whole = atom_run
    part = tmp_path / "part.h5"
    cg = AllAtomSettings(platform="Reference", frame_interval_ps=0.004, chunk_frames=2, seed=3)
    Generator(chignolin, part, cg).run(1)  # a CG molecule in the same file, with its own checkpoint
    assert Generator(chignolin, part, ATOM).run(2) == 2
    # Frames written after the last checkpoint (a crash before it was saved) are dropped on resume.
    x, f, _ = stored(part, "chignolin_allatom")
    assert append_frames(part, generator.molecule, x, f, [1.0, 2.0]) == 4
    resumed = Generator(chignolin, part, ATOM)
    assert resumed.frames_done == 2
    assert [len(a) for a in stored(part, "chignolin_allatom")] == [2, 2, 2]
    assert resumed.run(4) == 4
    for expected, got in zip(
        stored(whole, "chignolin_allatom"), stored(part, "chignolin_allatom"), strict=True
    ):
        np.testing.assert_array_equal(expected, got)
    both = ForceDataset(part)
    assert both.molecules == ["chignolin", "chignolin_allatom"] and both.has_energies == [False, True]
    assert len(both) == 5


def test_auto_platform_is_cuda_only_where_openmm_has_it():
    import openmm

    from gnnmd.data.allatom import resolve_platform

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    assert resolve_platform("auto") == ("CUDA" if "CUDA" in names else "CPU")
    assert resolve_platform("Reference") == "Reference"
