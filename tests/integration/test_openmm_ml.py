"""openmm-ml: MLPotential('gnnmd') through the entry point, on CG topologies; what it refuses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import openmm
import openmm.app
import openmm.unit
import pytest

from gnnmd.errors import TopologyError
from gnnmd.openmm import PlatformSpec, cg_topology_from_openmm, create_system, openmm_topology
from gnnmd.openmm.mlpotential import GnnmdPotentialImplFactory
from tests.conftest import perturbed
from tests.integration.test_openmm_forces import evaluate


def pdb_round_trip(system) -> openmm.app.Topology:
    """The CG topology as a user gets it: written as PDB by OpenMM, read back with PDBFile."""
    buffer = io.StringIO()
    openmm.app.PDBFile.writeFile(
        openmm_topology(system.topology), system.positions_nm * openmm.unit.nanometer, buffer
    )
    buffer.seek(0)
    return openmm.app.PDBFile(buffer).topology


def test_entry_point_resolves():
    from openmmml import MLPotential

    (entry,) = [e for e in entry_points(group="openmmml.potentials") if e.name == "gnnmd"]
    assert entry.load() is GnnmdPotentialImplFactory
    assert isinstance(MLPotential._implFactories["gnnmd"], GnnmdPotentialImplFactory)


@pytest.mark.parametrize("name", ["chignolin", "villin"])
def test_cg_topology_survives_openmm(name, chignolin, villin):
    """Bead types, masses and the whole bonded graph come back from an OpenMM PDB (villin has NLE)."""
    system = {"chignolin": chignolin, "villin": villin}[name]
    back = cg_topology_from_openmm(pdb_round_trip(system))
    assert back.bead_types == system.topology.bead_types
    np.testing.assert_allclose(back.masses_amu, system.topology.masses_amu)
    for key in ("bonds", "angles", "dihedrals"):
        np.testing.assert_array_equal(getattr(back, key), getattr(system.topology, key))


def test_create_system_through_openmm_ml(small_model, chignolin):
    from openmmml import MLPotential

    topology = pdb_round_trip(chignolin)
    potential = MLPotential("gnnmd", model=small_model, route="python", precision="double", platform="CPU")
    system = potential.createSystem(topology)
    masses = [
        system.getParticleMass(i).value_in_unit(openmm.unit.amu) for i in range(system.getNumParticles())
    ]
    np.testing.assert_allclose(masses, chignolin.topology.masses_amu)
    x = perturbed(chignolin.positions_nm, seed=6).numpy()
    energy, forces = evaluate(system, x)
    direct = create_system(
        chignolin.topology, small_model, route="python", platform=PlatformSpec("CPU", "double")
    )
    expected_energy, expected = evaluate(direct, x)
    np.testing.assert_allclose(forces, expected, rtol=1e-10, atol=1e-10)
    assert energy == pytest.approx(expected_energy, rel=1e-12)
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())


def test_torch_route_through_openmm_ml(chignolin):
    from openmmml import MLPotential

    system = MLPotential("gnnmd", model="default").createSystem(pdb_round_trip(chignolin))
    _, forces = evaluate(system, chignolin.positions_nm)
    _, expected = evaluate(
        create_system(chignolin.topology, "default", platform="CPU"), chignolin.positions_nm
    )
    np.testing.assert_allclose(forces, expected, rtol=1e-6, atol=1e-4)


def test_mixed_system_is_refused(chignolin):
    from openmmml import MLPotential

    topology = pdb_round_trip(chignolin)
    mm_system = openmm.System()
    for _ in range(topology.getNumAtoms()):
        mm_system.addParticle(12.0)
    potential = MLPotential("gnnmd", model="default")
    with pytest.raises(
        NotImplementedError, match=r"coarse-grained: .*createMixedSystem cannot couple them.*coarse_grain"
    ):
        potential.createMixedSystem(topology, mm_system, range(10))


def test_unknown_keywords_are_refused(chignolin):
    from openmmml import MLPotential

    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['modle'\]; allowed: \['model'"):
        MLPotential("gnnmd", modle="default")
    with pytest.raises(ValueError, match=r"createSystem: unknown keyword\(s\) \['cutoff'\]"):
        MLPotential("gnnmd").createSystem(pdb_round_trip(chignolin), cutoff=1.0)


def test_all_atom_topology_is_refused(chignolin):
    from openmmml import MLPotential

    all_atom = openmm.app.PDBFile(str(chignolin.pdb_path)).topology
    with pytest.raises(
        TopologyError, match=r"atom 'CG' is not a bead of the '5bead' mapping.*all-atom topology"
    ):
        MLPotential("gnnmd").createSystem(all_atom)


def test_unknown_residue_is_refused(chignolin):
    topology = pdb_round_trip(chignolin)
    residue = list(topology.residues())[2]
    residue.name = "XYZ"
    with pytest.raises(TopologyError, match=r"chain A residue XYZ 3 \(index 2\): unknown residue 'XYZ'"):
        cg_topology_from_openmm(topology)


def test_topology_without_backbone_bonds_is_refused(chignolin):
    source = pdb_round_trip(chignolin)
    bare = openmm.app.Topology()
    for chain in source.chains():
        new_chain = bare.addChain(chain.id)
        for residue in chain.residues():
            new_residue = bare.addResidue(residue.name, new_chain, residue.id)
            for atom in residue.atoms():
                bare.addAtom(atom.name, atom.element, new_residue)
    with pytest.raises(TopologyError, match="chain A has no bonds between its residues"):
        cg_topology_from_openmm(bare)


FRESH_PROCESS = """
from openmmml import MLPotential  # openmm before torch; the entry point brings in gnnmd
import openmm, openmm.app, sys
pdb = openmm.app.PDBFile(sys.argv[1])
system = MLPotential("gnnmd", model="default").createSystem(pdb.topology)
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
context.setPositions(pdb.positions)
print("energy", context.getState(getEnergy=True).getPotentialEnergy())
"""


def test_openmm_ml_needs_no_import_order(chignolin, tmp_path):
    """In a fresh process, `from openmmml import MLPotential` first still runs a TorchForce."""
    pdb = tmp_path / "cg.pdb"
    with pdb.open("w") as handle:
        positions = chignolin.positions_nm * openmm.unit.nanometer
        openmm.app.PDBFile.writeFile(openmm_topology(chignolin.topology), positions, handle)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", FRESH_PROCESS, str(pdb)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "energy " in completed.stdout and "nan" not in completed.stdout


def _ala2_pair():
    """Two alanine dipeptides 3 nm apart (all atoms), an amber14 System of both, and one ala2 alone."""
    from gnnmd.data.ala2_allatom import PDB_FILE

    pdb = openmm.app.PDBFile(str(PDB_FILE))
    modeller = openmm.app.Modeller(pdb.topology, pdb.positions)
    shifted = [p + openmm.Vec3(3.0, 0.0, 0.0) * openmm.unit.nanometer for p in pdb.positions]
    modeller.add(pdb.topology, shifted)
    forcefield = openmm.app.ForceField("amber14-all.xml")
    mm_system = forcefield.createSystem(modeller.topology, nonbondedMethod=openmm.app.NoCutoff)
    return pdb, modeller, mm_system


def _group_energy_forces(system, positions, group):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups={group})
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    per_nm = openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    forces = state.getForces(asNumpy=True).value_in_unit(per_nm)
    return energy, forces


def test_all_atom_models_follow_the_openmm_ml_contract():
    """createSystem on an all-atom topology equals the model itself; createMixedSystem puts the model on
    the ML atoms only (the other molecule feels no gnnmd force)."""
    import torch
    from openmmml import MLPotential

    from gnnmd.models import load_model
    from gnnmd.openmm.forces import FORCE_NAME
    from gnnmd.topology import custom_topology

    pdb, modeller, mm_system = _ala2_pair()
    potential = MLPotential("gnnmd", model="ala2-allatom")
    alone = potential.createSystem(pdb.topology)
    for force in alone.getForces():
        force.setForceGroup(5)
    energy, forces = _group_energy_forces(alone, pdb.positions, 5)
    model = load_model("ala2-allatom").double()
    symbols = [atom.element.symbol for atom in pdb.topology.atoms()]
    molecule = custom_topology("ala2", symbols, [1.0] * len(symbols), [])
    x = torch.tensor(pdb.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
    expected_energy, expected_forces = model.energy_and_forces(x, model.pack([molecule]))
    # OpenMM runs the float32 model; the reference is float64: 1e-3 of the largest force.
    assert energy == pytest.approx(float(expected_energy[0]), rel=1e-5, abs=1e-3)
    expected = expected_forces.numpy()
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-3 * np.abs(expected).max())

    mixed = potential.createMixedSystem(modeller.topology, mm_system, list(range(22)))
    (gnnmd_force,) = [f for f in mixed.getForces() if f.getName() == FORCE_NAME]
    gnnmd_force.setForceGroup(7)
    mixed_energy, mixed_forces = _group_energy_forces(mixed, modeller.positions, 7)
    assert mixed_energy == pytest.approx(energy, rel=1e-6)
    np.testing.assert_allclose(mixed_forces[:22], forces, rtol=1e-5, atol=1e-4)
    assert np.all(mixed_forces[22:] == 0.0)


def test_coarse_grain_maps_an_all_atom_openmm_topology_for_cg_models(chignolin):
    """An all-atom PDB through OpenMM -> coarse_grain -> createSystem: the shipped system's forces."""
    from openmmml import MLPotential

    from gnnmd.openmm import coarse_grain

    pdb = openmm.app.PDBFile(str(chignolin.pdb_path))  # all atoms and 12 waters
    topology, positions = coarse_grain(pdb.topology, pdb.positions)
    assert topology.getNumAtoms() == chignolin.topology.n_beads
    native = chignolin.positions_nm
    np.testing.assert_allclose(positions.value_in_unit(openmm.unit.nanometer), native, atol=1e-6)
    system = MLPotential("gnnmd", model="chignolin").createSystem(topology)
    energy, forces = evaluate(system, native)
    expected_energy, expected_forces = evaluate(create_system(chignolin.topology, "chignolin"), native)
    assert energy == pytest.approx(expected_energy, rel=1e-6)
    np.testing.assert_allclose(forces, expected_forces, rtol=1e-6, atol=1e-4)
