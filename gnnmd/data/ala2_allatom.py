"""The shipped all-atom alanine-dipeptide reference data, in gnnmd units.

Files in ``gnnmd/shipped/reference_data/ala2_allatom/`` (provenance in its PROVENANCE.md):

- ``ala2_all_atom.npz``: ``coords`` and ``forces``, (2000, 22, 3) float32, in
  **Å** and **kcal/mol/Å** (:data:`LENGTH_UNIT`, :data:`ENERGY_UNIT`);
- ``ala2_all_atom.pdb``: the 22 atoms (ACE-ALA-NME with hydrogens) in the order
  of the arrays.

The frames come from explicit-solvent MD with X–H bonds constrained, so the
forces on the solute carry solvent noise and say nothing about X–H stretching.
Everything returned here is converted to nm and kJ/mol/nm through
:mod:`gnnmd.units`.
"""

from __future__ import annotations

import os
from pathlib import Path

import mdtraj
import numpy as np

from gnnmd.assets import reference_data_dir
from gnnmd.data.dataset import write_molecule
from gnnmd.topology import CGTopology, custom_topology
from gnnmd.units import force_to_kj_per_mol_nm, length_to_nm

ALA2_ALLATOM_DIR = reference_data_dir("ala2_allatom")
ARRAYS_FILE = ALA2_ALLATOM_DIR / "ala2_all_atom.npz"
PDB_FILE = ALA2_ALLATOM_DIR / "ala2_all_atom.pdb"
#: Units of the shipped arrays (established against AMBER forces, see PROVENANCE.md).
LENGTH_UNIT = "angstrom"
ENERGY_UNIT = "kcal/mol"
MOLECULE_NAME = "ala2_allatom"
DESCRIPTION = (
    "alanine dipeptide, all 22 atoms, explicit-solvent MD with an AMBER force field, X-H bonds "
    "constrained; proteka example data (ClementiGroup/proteka @db2ffd8)"
)


def ala2_allatom_topology() -> CGTopology:
    """The 22 atoms as a topology of element types (``"C"``, ``"H"``, ``"N"``, ``"O"``), no bonds.

    Masses in amu from mdtraj's element table. All-atom models have no priors,
    so no bonded terms are needed.
    """
    atoms = list(mdtraj.load_topology(str(PDB_FILE)).atoms)
    return custom_topology(
        MOLECULE_NAME,
        [a.element.symbol for a in atoms],
        [a.element.mass for a in atoms],
        bonds=[],
        source=str(PDB_FILE),
    )


def ala2_allatom_frames() -> tuple[np.ndarray, np.ndarray]:
    """All frames: positions (2000, 22, 3) nm and forces (2000, 22, 3) kJ/mol/nm, float64."""
    with np.load(ARRAYS_FILE) as arrays:
        coordinates = arrays["coords"].astype(np.float64) * length_to_nm(LENGTH_UNIT)
        forces = arrays["forces"].astype(np.float64) * force_to_kj_per_mol_nm(ENERGY_UNIT, LENGTH_UNIT)
    return coordinates, forces


def import_ala2_allatom(output: str | os.PathLike, frames: slice = slice(None)) -> Path:
    """Write the shipped frames as one molecule of a gnnmd dataset (HDF5; nm, kJ/mol/nm) at ``output``.

    ``frames`` selects a contiguous part of the trajectory (default: all 2000),
    e.g. to keep the last frames out of training as a test set.
    """
    all_coordinates, all_forces = ala2_allatom_frames()
    coordinates, forces = all_coordinates[frames], all_forces[frames]
    if len(coordinates) == 0:
        raise ValueError(f"frames={frames} selects none of the {len(all_coordinates)} shipped frames")
    description = f"{DESCRIPTION}; frames {frames.start}:{frames.stop}"
    write_molecule(output, ala2_allatom_topology(), coordinates, forces, description=description)
    return Path(output)
