"""Recomputed forces for trajectories without them: equal to OpenMM's own, mapped like the generator's."""

from __future__ import annotations

import dataclasses

import h5py
import mdtraj
import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit

from gnnmd.cli import main
from gnnmd.data.ala2_allatom import PDB_FILE, ala2_allatom_frames
from gnnmd.data.allatom import FORCEFIELDS, AllAtomSettings, Generator
from gnnmd.data.dataset import DatasetError, ForceDataset, append_frames
from gnnmd.data.force_map import aggregate_forces, bead_groups
from gnnmd.data.recompute import RecomputeSettings, recompute
from gnnmd.errors import ForceFieldError, TrajectoryError

# The hand sums below are the hydrogens map's; the groups map is compared with the generator's below.
REFERENCE = RecomputeSettings(platform="Reference", chunk_frames=2, force_map="hydrogens")
#: Atoms of the 22-atom alanine dipeptide whose forces each ALA bead receives (ACE and NME are dropped).
ALA2_GROUPS = {
    "N": ("N", "H"),
    "CA": ("CA", "HA"),
    "CB": ("CB", "HB1", "HB2", "HB3"),
    "C": ("C",),
    "O": ("O",),
}


def _write_dcd(path, positions_nm: np.ndarray, pdb=PDB_FILE) -> np.ndarray:
    """Frames (F, A, 3) nm as a DCD; returns them as read back (float32-rounded, nm)."""
    topology = mdtraj.load_topology(str(pdb))
    mdtraj.Trajectory(positions_nm, topology).save_dcd(str(path))
    return mdtraj.load(str(path), top=str(pdb)).xyz.astype(np.float64)


@pytest.fixture()
def ala2_dcd(tmp_path):
    """Five frames of the shipped all-atom alanine dipeptide: (DCD path, positions (5, 22, 3) nm)."""
    path = tmp_path / "ala2.dcd"
    return path, _write_dcd(path, ala2_allatom_frames()[0][:1000:200])


def _openmm_forces(system: openmm.System, positions_nm: np.ndarray) -> np.ndarray:
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    forces = []
    for frame in positions_nm:
        context.setPositions(frame)
        state = context.getState(getForces=True)
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.asarray(forces)


def _amber14_system() -> openmm.System:
    # OpenMM's own PDB reader, independent of the importer's mdtraj topology.
    topology = app.PDBFile(str(PDB_FILE)).topology
    return app.ForceField(*FORCEFIELDS["amber14-gbn2"]).createSystem(topology, nonbondedMethod=app.NoCutoff)


def test_mapped_forces_equal_openmm_and_the_hand_sum(ala2_dcd, tmp_path):
    dcd, positions = ala2_dcd
    output = tmp_path / "ala2.h5"
    assert recompute(dcd, PDB_FILE, output, REFERENCE, name="ala2") == ("ala2", 5)
    coordinates, mapped = ForceDataset(output).frames(0)
    atoms = _openmm_forces(_amber14_system(), positions)
    topology = mdtraj.load_topology(str(PDB_FILE))
    dataset = ForceDataset(output)
    cg = dataset.topologies[0]
    assert cg.bead_types == ("ALA.N", "ALA.CA", "ALA.CB", "ALA.C", "ALA.O")
    expected = aggregate_forces(atoms, bead_groups(topology, cg, "hydrogens"), cg.n_beads)
    np.testing.assert_allclose(mapped, expected, rtol=1e-6, atol=1e-3)  # stored as float32
    np.testing.assert_array_equal(coordinates, positions[:, cg.atom_indices].astype(np.float32))
    # By hand: each bead's force is the sum over its atom and that atom's hydrogens, by name.
    ala = {a.name: a.index for a in topology.atoms if a.residue.name == "ALA"}
    for bead, names in enumerate(ALA2_GROUPS.values()):
        np.testing.assert_allclose(mapped[:, bead], atoms[:, [ala[n] for n in names]].sum(1), atol=1e-3)
    kept = [ala[n] for names in ALA2_GROUPS.values() for n in names]
    np.testing.assert_allclose(mapped.sum(1), atoms[:, kept].sum(1), atol=1e-3)
    assert np.abs(mapped).mean() > 50.0  # real forces, not zeros


def test_system_xml_gives_the_same_forces(ala2_dcd, tmp_path):
    dcd, _ = ala2_dcd
    xml = tmp_path / "system.xml"
    xml.write_text(openmm.XmlSerializer.serialize(_amber14_system()))
    recompute(dcd, PDB_FILE, tmp_path / "a.h5", REFERENCE)
    settings = RecomputeSettings(platform="Reference", system_xml=xml, force_map="hydrogens")
    recompute(dcd, PDB_FILE, tmp_path / "b.h5", settings)
    np.testing.assert_array_equal(
        ForceDataset(tmp_path / "a.h5").frames(0)[1], ForceDataset(tmp_path / "b.h5").frames(0)[1]
    )
    small = tmp_path / "small.xml"
    system = openmm.System()
    for _ in range(3):
        system.addParticle(1.0)
    small.write_text(openmm.XmlSerializer.serialize(system))
    with pytest.raises(ForceFieldError, match="has 3 particles but .*ala2_all_atom.pdb has 22 atoms"):
        recompute(dcd, PDB_FILE, tmp_path / "c.h5", RecomputeSettings(platform="Reference", system_xml=small))


@pytest.mark.parametrize("force_map", ["groups", "hydrogens"])
def test_agrees_with_the_generators_forces(chignolin, tmp_path, force_map):
    """The generator and recompute with the same force map give the same bead forces for one frame."""
    generator = Generator(
        chignolin,
        tmp_path / "unused.h5",
        AllAtomSettings(platform="Reference", frame_interval_ps=0.004, force_map=force_map),
    )
    beads, forces, _ = generator.record(1)
    atoms = (
        generator.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    )
    pdb = tmp_path / "chignolin_h.pdb"
    with open(pdb, "w") as file:
        app.PDBFile.writeFile(generator.topology, atoms, file)
    _write_dcd(tmp_path / "frame.dcd", np.asarray(atoms)[None], pdb)
    settings = RecomputeSettings(platform="Reference", chunk_frames=2, force_map=force_map)
    recompute(tmp_path / "frame.dcd", pdb, tmp_path / "d.h5", settings, name="chignolin")
    dataset = ForceDataset(tmp_path / "d.h5")
    assert dataset.topologies[0].bead_types == generator.cg.bead_types
    coordinates, mapped = dataset.frames(0)
    np.testing.assert_allclose(coordinates, beads, atol=1e-6)
    # The DCD rounds positions to float32 Å; stiff bonds turn that into up to 0.09 kJ/mol/nm here,
    # against an RMS force of ~800 and ~1000 for the slice map's error.
    np.testing.assert_allclose(mapped, forces, rtol=1e-4, atol=0.5)


def test_the_force_map_is_part_of_the_molecules_record(ala2_dcd, tmp_path):
    """Another map cannot extend a molecule; a dataset from before the choice (no field) is the
    hydrogens map's, so it still resumes with force_map="hydrogens"."""
    dcd, _ = ala2_dcd
    output = tmp_path / "maps.h5"
    recompute(dcd, PDB_FILE, output, REFERENCE, name="ala2")  # hydrogens: no force_map in the record
    assert "force_map" not in REFERENCE.hamiltonian()
    groups = RecomputeSettings(platform="Reference", chunk_frames=2)
    assert groups.hamiltonian()["force_map"] == "groups"
    with pytest.raises(DatasetError, match="force_map"):
        recompute(dcd, PDB_FILE, output, groups, name="ala2")
    with pytest.raises(ValueError, match="unknown force map 'slices'"):
        RecomputeSettings(force_map="slices")


def test_interrupted_import_resumes_and_nothing_is_imported_twice(ala2_dcd, tmp_path):
    dcd, positions = ala2_dcd
    whole = tmp_path / "whole.h5"
    recompute(dcd, PDB_FILE, whole, REFERENCE)
    part = tmp_path / "part.h5"

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recompute(dcd, PDB_FILE, part, REFERENCE, progress=interrupt)
    # A crash between writing a chunk and logging it: the unlogged frame is dropped on resume.
    with h5py.File(part, "r") as file:
        first = [file[f"molecules/ala2_all_atom/{label}"][:1] for label in ("coordinates", "forces")]
    append_frames(part, ForceDataset(part).topologies[0], *first)
    assert recompute(dcd, PDB_FILE, part, REFERENCE)[1] == 5
    for a, b in zip(ForceDataset(whole).frames(0), ForceDataset(part).frames(0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert recompute(dcd, PDB_FILE, part, REFERENCE)[1] == 5  # already complete: no duplicate frames
    other = tmp_path / "other.dcd"
    _write_dcd(other, positions[:3] + 0.001)
    recompute(other, PDB_FILE, part, REFERENCE)
    assert len(ForceDataset(part)) == 8  # a second trajectory is appended to the molecule
    with pytest.raises(DatasetError, match="one molecule must have one Hamiltonian"):
        recompute(other, PDB_FILE, part, RecomputeSettings(platform="Reference", ignore_external_bonds=True))
    strided = tmp_path / "strided.h5"
    recompute(dcd, PDB_FILE, strided, dataclasses.replace(REFERENCE, stride=2))
    for a, b in zip(ForceDataset(whole).frames(0, [0, 2, 4]), ForceDataset(strided).frames(0), strict=True):
        np.testing.assert_array_equal(a, b)


def test_atom_count_mismatch_and_unmatched_template_are_named(ala2_dcd, tmp_path):
    _, positions = ala2_dcd
    topology = mdtraj.load_topology(str(PDB_FILE))
    ha = [a.index for a in topology.atoms if not (a.residue.name == "ALA" and a.name == "HA")]
    short = tmp_path / "short.dcd"
    mdtraj.Trajectory(positions[:, ha], topology.subset(ha)).save_dcd(str(short))
    with pytest.raises(TrajectoryError, match="short.dcd: frames have 21 atoms but the topology .* has 22"):
        recompute(short, PDB_FILE, tmp_path / "e.h5", REFERENCE)
    pdb = tmp_path / "no_ha.pdb"
    mdtraj.load(str(PDB_FILE)).atom_slice(ha).save_pdb(str(pdb))
    with pytest.raises(
        ForceFieldError, match=r"no_ha.pdb: force field amber14-gbn2 cannot parametrize residue ALA 2"
    ):
        recompute(short, pdb, tmp_path / "e.h5", REFERENCE)
    assert not (tmp_path / "e.h5").exists()


def test_nan_positions_name_the_frame(ala2_dcd, tmp_path):
    _, positions = ala2_dcd
    broken = positions.copy()
    broken[3, 7] = np.nan
    path = tmp_path / "nan.dcd"
    _write_dcd(path, broken)
    with pytest.raises(TrajectoryError, match="nan.dcd: frame 3 has non-finite positions"):
        recompute(path, PDB_FILE, tmp_path / "f.h5", REFERENCE)


def test_command_line(ala2_dcd, tmp_path, capsys):
    dcd, _ = ala2_dcd
    output = tmp_path / "cli.h5"
    command = ["data", "recompute", str(dcd), "--topology", str(PDB_FILE), "--platform", "Reference"]
    assert main([*command, "--stride", "2", "-o", str(output)]) == 0
    assert "ala2_all_atom: 3 frames" in capsys.readouterr().out
    assert len(ForceDataset(output)) == 3
    assert main([*command, "--topology", str(tmp_path / "missing.pdb"), "-o", str(output)]) == 2
    assert "missing.pdb: cannot read the topology" in capsys.readouterr().err
