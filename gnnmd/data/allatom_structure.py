"""All-atom structures for reference dynamics: a system's protein with hydrogens and terminal
oxygens added for the force field, and every atom as a bead typed by its element.

Units: nm, amu.
"""

from __future__ import annotations

import random

import mdtraj
import numpy as np

from gnnmd.errors import GnnmdError
from gnnmd.systems import System
from gnnmd.topology import CGTopology, custom_topology


def allatom_topology(name: str, topology, masses_amu: np.ndarray, source: str) -> CGTopology:
    """Every atom of an OpenMM ``topology`` as a bead typed by its element symbol (``"C"``, ``"H"``, ...).

    No bonds (all-atom models have no priors), like the shipped all-atom alanine
    dipeptide. ``masses_amu`` (A,) in amu, in the topology's atom order.
    """
    symbols = [atom.element.symbol for atom in topology.atoms()]
    return custom_topology(name, symbols, masses_amu, bonds=[], source=source)


#: C–O bond length of a carboxylate, nm (amber14: 0.125 nm).
CARBOXYLATE_CO_NM = 0.125


def add_terminal_oxygens(topology, positions_nm: np.ndarray):
    """Add the missing OXT of every chain's C-terminal amino acid; returns (openmm Topology, (A, 3) nm).

    Crystal and NMR structures often end a chain without OXT (1ENH, 2HBA), and
    the force field's C-terminal templates need it. It is placed in the plane
    of CA, C and O, opposite their bisector, 0.125 nm from C; the minimisation
    before dynamics relaxes it. Chains that have OXT, or whose last residue
    lacks CA, C or O, are copied unchanged.
    """
    import openmm.app as app

    ends = [residues[-1] for chain in topology.chains() if (residues := list(chain.residues()))]
    added = {}
    for residue in ends:
        names = {atom.name: atom.index for atom in residue.atoms()}
        if "OXT" not in names and {"CA", "C", "O"} <= names.keys():
            c = positions_nm[names["C"]]
            bisector = sum(_unit(positions_nm[names[n]] - c) for n in ("CA", "O"))
            added[residue.index] = c - CARBOXYLATE_CO_NM * _unit(bisector)
    if not added:
        return topology, positions_nm
    copy, atoms, coordinates = app.Topology(), {}, []
    copy.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
    for chain in topology.chains():
        new_chain = copy.addChain(chain.id)
        for residue in chain.residues():
            new_residue = copy.addResidue(residue.name, new_chain, residue.id, residue.insertionCode)
            for atom in residue.atoms():
                atoms[atom.index] = copy.addAtom(atom.name, atom.element, new_residue, atom.id)
                coordinates.append(positions_nm[atom.index])
            if residue.index in added:
                oxygen = copy.addAtom("OXT", app.element.oxygen, new_residue)
                carbon = next(a for a in residue.atoms() if a.name == "C")
                copy.addBond(atoms[carbon.index], oxygen)
                coordinates.append(added[residue.index])
    for bond in topology.bonds():
        copy.addBond(atoms[bond[0].index], atoms[bond[1].index])
    return copy, np.array(coordinates)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def build_allatom(system: System, forcefield, seed: int = 0):
    """The system's protein residues, hydrogens added for ``forcefield``: (openmm Topology, positions nm)."""
    import openmm
    import openmm.app as app
    from openmm import unit

    structure = mdtraj.load(str(system.pdb_path))
    residues = {structure.topology.atom(int(i)).residue.index for i in system.topology.atom_indices}
    keep = [
        a.index for a in structure.topology.atoms if a.residue.index in residues and a.element.symbol != "H"
    ]
    heavy = structure.atom_slice(keep)[0]
    topology, positions = add_terminal_oxygens(heavy.topology.to_openmm(), heavy.xyz[0].astype(np.float64))
    modeller = app.Modeller(topology, positions * unit.nanometer)
    # addHydrogens starts hydrogens at positions drawn from Python's global `random`:
    # seed it for reproducible runs, and give the caller's random state back afterwards.
    caller_state = random.getstate()
    random.seed(seed)
    try:
        # The Reference platform sums in a fixed order: the relaxed hydrogens are reproducible.
        modeller.addHydrogens(forcefield, platform=openmm.Platform.getPlatformByName("Reference"))
    except ValueError as error:
        raise GnnmdError(f"{system.pdb_path}: cannot add hydrogens for the force field ({error})") from error
    finally:
        random.setstate(caller_state)
    positions = np.array(modeller.getPositions().value_in_unit(unit.nanometer))
    return modeller.getTopology(), positions
