"""All-atom data generation: the force map is right where the answer is known, and runs resume exactly."""

from __future__ import annotations

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import unit

from gnnmd.data.allatom import AllAtomSettings, Generator
from gnnmd.data.dataset import ForceDataset
from gnnmd.data.force_map import aggregate_forces, bead_groups
from gnnmd.topology import custom_topology


def test_rigid_two_atom_bead_gets_the_force_on_its_hydrogen():
    """A C-H pair held rigid by a constraint, a linear field E = k·x on the H only.

    The bead (at C) then feels exactly -k x̂ on average and in every frame: the
    slice map (force on C alone) reports 0, the aggregated map reports -k x̂.
    """
    k = 37.5  # kJ/mol/nm
    system = openmm.System()
    system.addParticle(12.011)
    system.addParticle(1.008)
    system.addConstraint(0, 1, 0.109)
    field = openmm.CustomExternalForce("k*x")
    field.addGlobalParameter("k", k)
    field.addParticle(1, [])
    system.addForce(field)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions([[0.3, 0.1, -0.2], [0.35, 0.19, -0.21]])
    atom_forces = (
        context.getState(getForces=True)
        .getForces(asNumpy=True)
        .value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    )
    topology = mdtraj.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    carbon = topology.add_atom("C", mdtraj.element.carbon, residue)
    hydrogen = topology.add_atom("H", mdtraj.element.hydrogen, residue)
    topology.add_bond(carbon, hydrogen)
    cg = custom_topology("dumbbell", ["MOL.C"], [13.019], [])
    groups = bead_groups(topology, cg)
    assert groups.tolist() == [0, 0]
    bead_force = aggregate_forces(np.asarray(atom_forces)[None], groups, 1)[0, 0]
    np.testing.assert_allclose(bead_force, [-k, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(np.asarray(atom_forces)[0], 0.0, atol=1e-12)  # what a slice map would use


def test_chignolin_hydrogens_follow_their_bead_atoms(chignolin, tmp_path):
    settings = AllAtomSettings(platform="Reference", force_map="hydrogens")
    generator = Generator(chignolin, tmp_path / "unused.h5", settings)
    cg, groups = generator.cg, generator.groups
    assert cg.n_beads == 49
    import openmm.app as app

    from gnnmd.data.allatom import FORCEFIELDS
    from gnnmd.data.allatom_structure import build_allatom

    topology = mdtraj.Topology.from_openmm(
        build_allatom(chignolin, app.ForceField(*FORCEFIELDS["amber14-gbn2"]))[0]
    )
    for bead, atom_index in enumerate(cg.atom_indices):
        atom = topology.atom(int(atom_index))
        hydrogens = sorted(
            a.name for a in topology.atoms if groups[a.index] == bead and a.element.symbol == "H"
        )
        bonded = sorted(
            (b if a.index == atom.index else a).name
            for a, b in topology.bonds
            if atom.index in (a.index, b.index) and (b if a.index == atom.index else a).element.symbol == "H"
        )
        assert hydrogens == bonded, (cg.bead_types[bead], hydrogens, bonded)
    ca = [i for i, t in enumerate(cg.bead_types) if t == "GLY.CA"][0]
    assert (groups == ca).sum() == 3  # glycine's CA carries two hydrogens
    side_chain = [a.index for a in topology.atoms if a.name in ("CG", "CD", "OH")]
    assert (groups[side_chain] == -1).all()


@pytest.fixture()
def tiny():
    return AllAtomSettings(platform="Reference", frame_interval_ps=0.004, chunk_frames=2, seed=3)


def test_resumed_run_equals_uninterrupted(chignolin, tmp_path, tiny):
    whole = tmp_path / "whole.h5"
    Generator(chignolin, whole, tiny).run(4)
    part = tmp_path / "part.h5"
    Generator(chignolin, part, tiny).run(2)
    resumed = Generator(chignolin, part, tiny)
    assert resumed.frames_done == 2
    assert resumed.run(4) == 4
    a, b = ForceDataset(whole).frames(0), ForceDataset(part).frames(0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.isfinite(a[1]).all() and np.abs(a[1]).mean() > 10.0


def test_resume_refuses_other_settings(chignolin, tmp_path, tiny):
    path = tmp_path / "d.h5"
    Generator(chignolin, path, tiny).run(2)
    other = AllAtomSettings(platform="Reference", frame_interval_ps=0.004, chunk_frames=2, seed=4)
    with pytest.raises(Exception, match="use a new output file"):
        Generator(chignolin, path, other)


def test_chain_ends_without_oxt_get_one_and_the_force_field_accepts_them():
    """1ENH ends its chain without OXT, which the C-terminal template needs: it is added, planar, 0.125 nm."""
    import openmm.app as app

    from gnnmd.data.allatom import FORCEFIELDS
    from gnnmd.data.allatom_structure import CARBOXYLATE_CO_NM, add_terminal_oxygens, build_allatom
    from gnnmd.systems import load_system

    structure = mdtraj.load(str(load_system("engrailed").pdb_path)).remove_solvent()
    heavy = structure.atom_slice(structure.topology.select("protein and not element H"))
    topology, positions = add_terminal_oxygens(heavy.topology.to_openmm(), heavy.xyz[0].astype(np.float64))
    assert topology.getNumAtoms() == heavy.n_atoms + 1
    last = list(topology.residues())[-1]
    atoms = {atom.name: atom.index for atom in last.atoms()}
    c, o, oxt, ca = (positions[atoms[name]] for name in ("C", "O", "OXT", "CA"))
    assert np.linalg.norm(oxt - c) == pytest.approx(CARBOXYLATE_CO_NM)
    normal = np.cross(ca - c, o - c)
    assert abs(np.dot(oxt - c, normal)) < 1e-9  # in the CA-C-O plane
    assert any({a.name for a in bond} == {"C", "OXT"} for bond in topology.bonds())
    # With it, hydrogens can be added and a System built for the whole 54-residue chain.
    allatom, _ = build_allatom(load_system("engrailed"), app.ForceField(*FORCEFIELDS["amber14-gbn2"]))
    assert allatom.getNumAtoms() == 947
    # A chain that already ends in OXT (CLN025) is returned as it was.
    chignolin = mdtraj.load(str(load_system("chignolin").pdb_path))
    protein = chignolin.atom_slice(chignolin.topology.select("protein"))
    unchanged, _ = add_terminal_oxygens(protein.topology.to_openmm(), protein.xyz[0].astype(np.float64))
    assert unchanged.getNumAtoms() == protein.n_atoms


def test_a_tampered_generator_checkpoint_cannot_run_code(chignolin, tmp_path, tiny):
    from tests.integration.test_train_trust import Exploit

    path = tmp_path / "d.h5"
    generator = Generator(chignolin, path, tiny)
    generator.run(2)
    sentinel = tmp_path / "pwned"
    np.savez(generator.checkpoint, settings=np.array(tiny.fingerprint()), frames=np.array(2),
             state=np.array([Exploit(sentinel)], dtype=object))  # fmt: skip
    with pytest.raises(Exception, match=rf"{generator.checkpoint.name}: not a readable generator checkpoint"):
        Generator(chignolin, path, tiny)
    assert not sentinel.exists()


def test_groups_force_map_gives_every_atom_to_its_nearest_bead_and_keeps_the_net_force(tmp_path):
    """ala2's five backbone beads: every atom goes to the bead atom nearest along bonds, so the
    bead forces add up to the molecule's net force (zero in implicit solvent), which the
    hydrogens-only map does not; both maps give each bead its own atom and its hydrogens."""
    import warnings

    from gnnmd.systems import DroppedAtomsWarning, load_system

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedAtomsWarning)
        ala2 = load_system("ala2")
    generator = Generator(ala2, tmp_path / "g.h5", AllAtomSettings(platform="Reference", seed=3))
    atoms = mdtraj.Topology.from_openmm(generator.topology)
    owners = {f"{a.residue.name}.{a.name}": int(generator.groups[a.index]) for a in atoms.atoms}
    expected = {
        0: {"ACE.CH3", "ACE.H1", "ACE.H2", "ACE.H3", "ACE.C", "ACE.O"},
        1: {"ALA.N", "ALA.H"},
        2: {"ALA.CA", "ALA.HA", "ALA.CB", "ALA.HB1", "ALA.HB2", "ALA.HB3"},
        3: {"ALA.C", "ALA.O"},
        4: {"NME.N", "NME.H", "NME.C", "NME.H1", "NME.H2", "NME.H3"},
    }
    assert {bead: {a for a, b in owners.items() if b == bead} for bead in expected} == expected
    hydrogens = bead_groups(atoms, generator.cg, "hydrogens")
    assert {a.name for a in atoms.atoms if hydrogens[a.index] == 2} == {"CA", "HA"}
    assert (hydrogens == -1).sum() == 14  # both methyls and CB with their H (12), both O: dropped
    generator.integrator.step(50)  # away from the energy minimum, to thermal forces
    state = generator.context.getState(getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)[None]
    grouped = aggregate_forces(forces, generator.groups, 5)[0]
    assert np.abs(grouped.sum(axis=0)).max() < 1e-3 * np.abs(grouped).max()
    assert np.abs(aggregate_forces(forces, hydrogens, 5)[0].sum(axis=0)).max() > 10.0
    with pytest.raises(ValueError, match="unknown force_map"):
        bead_groups(atoms, generator.cg, "slice")
    with pytest.raises(ValueError, match="unknown force_map"):
        AllAtomSettings(force_map="slice")


def test_the_force_map_is_part_of_a_runs_identity(chignolin, tmp_path, tiny):
    path = tmp_path / "d.h5"
    Generator(chignolin, path, tiny).run(2)
    hydrogens = AllAtomSettings(platform="Reference", frame_interval_ps=0.004, chunk_frames=2, seed=3,
                                force_map="hydrogens")  # fmt: skip
    with pytest.raises(Exception, match="use a new output file"):
        Generator(chignolin, path, hydrogens)
    assert "'force_map': 'groups'" in tiny.fingerprint() and "force_map" not in hydrogens.fingerprint()
