"""gnnmd potentials in ASE: a calculator for all-atom molecules and CG proteins (eV, Å).

::

    from gnnmd.ase import GNNMDCalculator, hydrogen_bond_constraints, pdb_atoms

    atoms = pdb_atoms(path_to_pdb)                             # all-atom alanine dipeptide
    atoms.set_constraint(hydrogen_bond_constraints(atoms))     # as in the model's training data
    atoms.calc = GNNMDCalculator(model="ala2-allatom")
    atoms.get_potential_energy(), atoms.get_forces()           # eV, eV/Å

    from gnnmd.ase import cg_atoms
    from gnnmd.systems import load_system

    beads = cg_atoms(load_system("chignolin"))                 # bead types + bonds on the Atoms
    beads.calc = GNNMDCalculator(model="default")

- :mod:`gnnmd.ase.convert`: Atoms → model inputs (types, units, periodic frame), CG Atoms.
- :mod:`gnnmd.ase.calculator`: the calculator, stress by autograd, batch evaluation.
"""

from gnnmd.ase.calculator import (
    DeviceUnavailableError,
    GNNMDCalculator,
    NonFiniteEnergyError,
    StressUnavailableError,
)
from gnnmd.ase.convert import (
    BEAD_TYPES_ARRAY,
    BONDS_INFO,
    cg_atoms,
    hydrogen_bond_constraints,
    pdb_atoms,
    restore_cg,
)

__all__ = [
    "BEAD_TYPES_ARRAY",
    "BONDS_INFO",
    "DeviceUnavailableError",
    "GNNMDCalculator",
    "NonFiniteEnergyError",
    "StressUnavailableError",
    "cg_atoms",
    "restore_cg",
    "hydrogen_bond_constraints",
    "pdb_atoms",
]
