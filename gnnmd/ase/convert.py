"""ASE ``Atoms`` to model inputs, and ``Atoms`` helpers (CG systems, PDB files, X–H constraints).

Kept apart from the calculator: conversion, checks and builders,
testable without a model call.

**Types.** A model whose every type is an element symbol (``"C"``, ``"H"``...)
is an *element model* (all-atom): it reads ``atoms.numbers``. Any other model is
a *bead model* (CG): it reads the per-atom strings in
``atoms.arrays["bead_types"]`` (:data:`BEAD_TYPES_ARRAY`) and the bonded pairs
in ``atoms.info["bead_bonds"]`` (:data:`BONDS_INFO`, (B, 2) int), both set by
:func:`cg_atoms`. Bead models with priors need the bonds; element models take
every pair inside the cutoff and ignore bonds.

**Round trips.** Standard formats keep what they can: extxyz keeps everything;
``ase.io.Trajectory`` drops custom arrays but keeps ``info``, where
:func:`cg_atoms` also stores the bead types; a PDB written by ASE keeps residue
and atom names (:func:`cg_atoms` sets them: ``TYR``/``CA``), from which
:func:`restore_cg` rebuilds types and bonds by gnnmd's mapping rules. The
calculator calls :func:`restore_cg`, so re-read frames evaluate as written.

**Cells.** Non-periodic ``Atoms`` (``pbc`` all False) are evaluated in open
space; the cell is ignored. Periodic ``Atoms`` must be periodic in all three
directions. The cell is Minkowski-reduced (same lattice, most compact basis),
then the positions and the cell are rotated so that the cell is lower
triangular (a along x, b in the xy plane): the form gnnmd's minimum-image
convention expects. The model sees each pair once, at its nearest image, which
is exact only when the cutoff is at most half the narrowest width of the cell;
a narrower cell raises :class:`~gnnmd.errors.AtomsError`.

Units: ASE gives Å; everything returned here is in nm (through :mod:`gnnmd.units`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import mdtraj
import numpy as np
from ase import Atoms
from ase.constraints import FixBondLengths
from ase.geometry import minkowski_reduce

from gnnmd.errors import AtomsError, BeadTypeError
from gnnmd.protein_mapping import BEAD_NAMES, map_to_cg
from gnnmd.systems import System
from gnnmd.topology import CGTopology, custom_topology, is_element_model
from gnnmd.units import length_to_nm

#: ``atoms.arrays`` key of the per-atom bead types of CG ``Atoms``.
BEAD_TYPES_ARRAY = "bead_types"
#: ``atoms.info`` key of the (B, 2) bonded bead pairs of CG ``Atoms``.
BONDS_INFO = "bead_bonds"
NM_PER_ANGSTROM = length_to_nm("angstrom")


@dataclass(frozen=True, eq=False)
class ModelInput:
    """One ``Atoms`` object in the model's units and frame.

    Attributes:
        topology: types (and bonds, for bead models) of the structure.
        positions_nm: (n, 3) float64 nm, in the model frame.
        box_nm: (3, 3) float64 nm lower-triangular box (rows a, b, c), or None in open space.
        rotation: (3, 3) orthogonal; model frame = ASE frame @ rotation (identity in open space).
        volume_a3: cell volume in Å³ (periodic), else None.
    """

    topology: CGTopology
    positions_nm: np.ndarray
    box_nm: np.ndarray | None
    rotation: np.ndarray
    volume_a3: float | None


def atom_types(atoms: Atoms, vocabulary: Sequence[str], model_name: str) -> tuple[str, ...]:
    """Per-atom type names of ``atoms`` for a model with ``vocabulary``; a type outside it raises.

    Raises:
        AtomsError: a bead model without bead types on the Atoms, or an element
            model given CG Atoms (they carry bead types).
        BeadTypeError: an element or bead type the model does not know (named with its atom index).
    """
    carried = atoms.arrays.get(BEAD_TYPES_ARRAY)
    if is_element_model(vocabulary):
        if carried is not None:
            raise AtomsError(
                f"these Atoms carry CG bead types (atoms.arrays[{BEAD_TYPES_ARRAY!r}]) but model "
                f"{model_name} is an all-atom model over elements {sorted(vocabulary)}"
            )
        types, kind = tuple(atoms.get_chemical_symbols()), "element"
    elif carried is None:
        raise AtomsError(
            f"model {model_name} is a CG model (bead types such as {vocabulary[0]!r}) but these Atoms "
            f"carry no atoms.arrays[{BEAD_TYPES_ARRAY!r}]; build them with gnnmd.ase.cg_atoms(system)"
        )
    else:
        types, kind = tuple(str(t) for t in carried), "bead type"
    known = set(vocabulary)
    unknown = [i for i, t in enumerate(types) if t not in known]
    if unknown:
        first = unknown[0]
        raise BeadTypeError(
            f"{kind} {types[first]!r} of atom {first} is not in model {model_name}'s vocabulary "
            f"{sorted(vocabulary) if len(vocabulary) <= 12 else f'of {len(vocabulary)} types'}; "
            f"unknown: {sorted({types[i] for i in unknown})}"
        )
    return types


def atom_bonds(atoms: Atoms, required: bool, model_name: str) -> np.ndarray:
    """(B, 2) int64 bonded pairs from ``atoms.info[BONDS_INFO]``; missing bonds raise when ``required``."""
    bonds = atoms.info.get(BONDS_INFO)
    if bonds is None:
        if required:
            raise AtomsError(
                f"model {model_name} has bonded priors but these Atoms carry no "
                f"atoms.info[{BONDS_INFO!r}]; build them with gnnmd.ase.cg_atoms(system), or set an "
                "empty (0, 2) array to run without bonds"
            )
        return np.zeros((0, 2), dtype=np.int64)
    array = np.asarray(bonds)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    valid = array.ndim == 2 and array.shape[1] == 2 and np.issubdtype(array.dtype, np.integer)
    if not valid or array.min() < 0 or array.max() >= len(atoms) or (array[:, 0] == array[:, 1]).any():
        raise AtomsError(
            f"atoms.info[{BONDS_INFO!r}] must be (B, 2) integer pairs of distinct atoms in "
            f"0..{len(atoms) - 1}, "
            f"got {np.array2string(array, threshold=6)}"
        )
    return array.astype(np.int64)


def check_finite(atoms: Atoms) -> None:
    """Raise AtomsError naming the first atom with a NaN or infinite coordinate."""
    bad = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
    if len(bad):
        raise AtomsError(
            f"position of atom {bad[0]} is {atoms.positions[bad[0]].tolist()} Å (not finite); "
            f"{len(bad)} atom(s) affected"
        )


def periodic_frame(atoms: Atoms, cutoff_nm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower-triangular box (3, 3) nm, rotation (3, 3)) of 3-D periodic ``atoms``; None in open space.

    Raises:
        AtomsError: partial periodicity, a degenerate or non-finite cell, or a
            cell whose narrowest width is below twice ``cutoff_nm``.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return None
    if not pbc.all():
        raise AtomsError(
            f"pbc={pbc.tolist()}: gnnmd handles open space (all False) or 3-D periodic cells "
            "(all True), not periodicity in some directions only"
        )
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not np.isfinite(cell).all() or abs(np.linalg.det(cell)) < 1e-9:
        raise AtomsError(f"pbc is True but the cell {cell.tolist()} Å is not finite with a non-zero volume")
    reduced, _ = minkowski_reduce(cell, pbc=True)
    box, rotation = lower_triangular(reduced)
    box_nm = box * NM_PER_ANGSTROM
    narrowest = float(cell_widths(box_nm).min())
    if 2.0 * cutoff_nm > narrowest:
        raise AtomsError(
            f"the cell's narrowest width is {narrowest:.4f} nm, less than twice the model's cutoff "
            f"({cutoff_nm} nm): minimum image would miss pairs; use a larger cell"
        )
    return box_nm, rotation


def lower_triangular(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cell @ R, R) with R orthogonal and cell @ R lower triangular with a positive diagonal."""
    q, r = np.linalg.qr(cell.T)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    rotation = q * signs[None, :]
    # Exact zeros above the diagonal: the minimum-image wrap reads the rows as a, b, c.
    return np.tril(cell @ rotation), rotation


def cell_widths(box: np.ndarray) -> np.ndarray:
    """(3,) distances between opposite faces of the cell with rows ``box`` (same length unit)."""
    volume = abs(np.linalg.det(box))
    a, b, c = box
    return volume / np.linalg.norm([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)


def model_input(atoms: Atoms, topology: CGTopology, cutoff_nm: float) -> ModelInput:
    """Positions and box of ``atoms`` in nm and in the model frame (see the module docstring)."""
    check_finite(atoms)
    positions_nm = np.asarray(atoms.positions, dtype=np.float64) * NM_PER_ANGSTROM
    frame = periodic_frame(atoms, cutoff_nm)
    if frame is None:
        return ModelInput(topology, positions_nm, None, np.eye(3), None)
    box_nm, rotation = frame
    return ModelInput(topology, positions_nm @ rotation, box_nm, rotation, float(atoms.cell.volume))


def atoms_topology(atoms: Atoms, types: tuple[str, ...], bonds: np.ndarray) -> CGTopology:
    """A topology of ``atoms`` with the given per-atom types and bonds (masses from the Atoms, amu).

    Masses do not enter the potential; they are kept for completeness.
    """
    return custom_topology(
        atoms.get_chemical_formula(), types, atoms.get_masses(), [tuple(b) for b in bonds], source="ASE Atoms"
    )


def cg_atoms(system: System | CGTopology, positions_nm: np.ndarray | None = None) -> Atoms:
    """CG ``Atoms`` of a gnnmd system: one atom per bead, ready for a bead-model calculator.

    Each bead becomes an atom of its mapped atom's element with the bead's mass
    (amu); ``atoms.arrays["bead_types"]`` holds the bead types and
    ``atoms.info["bead_bonds"]`` the (B, 2) bonded pairs. The result is in open
    space (``pbc`` False); set a cell and ``pbc`` for periodic runs.

    Args:
        system: a :class:`~gnnmd.systems.System` (e.g. ``load_system("chignolin")``) or a topology.
        positions_nm: (n_beads, 3) nm; default: the system's native positions (required for a topology).
    Returns:
        Atoms with positions in Å.
    """
    topology = system.topology if isinstance(system, System) else system
    if positions_nm is None:
        if not isinstance(system, System):
            raise ValueError("positions_nm is required when cg_atoms() is given a topology")
        positions_nm = system.positions_nm
    positions = np.asarray(positions_nm, dtype=np.float64)
    if positions.shape != (topology.n_beads, 3):
        raise ValueError(f"positions_nm has shape {positions.shape}, expected ({topology.n_beads}, 3)")
    symbols = [atom.element.symbol for atom in topology.to_mdtraj().atoms]
    atoms = Atoms(symbols=symbols, positions=positions / NM_PER_ANGSTROM, masses=topology.masses_amu)
    atoms.new_array(BEAD_TYPES_ARRAY, np.array(topology.bead_types, dtype=str))
    atoms.info[BONDS_INFO] = topology.bonds.copy()
    # Copies that survive formats which drop custom arrays (see "Round trips" above).
    atoms.info[BEAD_TYPES_ARRAY] = list(topology.bead_types)
    atoms.new_array("residuenames", np.array(topology.residue_names, dtype="U4"))
    atoms.new_array("atomtypes", np.array(topology.bead_names, dtype="U4"))
    atoms.new_array("residuenumbers", np.asarray(topology.residue_ids, dtype=int))
    return atoms


def restore_cg(atoms: Atoms) -> Atoms:
    """Give CG ``Atoms`` read back from a file their bead types and bonds again (in place).

    Bead types come from ``atoms.info["bead_types"]`` (``ase.io.Trajectory``) or,
    for a PDB, from residue and atom names; bonds from ``atoms.info`` or, for a
    PDB, from gnnmd's mapping rules applied to those names and the positions.
    Atoms without any of these (all-atom structures) are returned unchanged.
    """
    if BEAD_TYPES_ARRAY not in atoms.arrays:
        stored = atoms.info.get(BEAD_TYPES_ARRAY)
        if stored is not None and len(stored) == len(atoms):
            atoms.new_array(BEAD_TYPES_ARRAY, np.array([str(t) for t in stored], dtype=str))
        elif "residuenames" in atoms.arrays and "atomtypes" in atoms.arrays:
            recovered = _topology_from_names(atoms)
            if recovered is not None:
                atoms.new_array(BEAD_TYPES_ARRAY, np.array(recovered.bead_types, dtype=str))
                atoms.info.setdefault(BONDS_INFO, recovered.bonds.copy())
    return atoms


def _topology_from_names(atoms: Atoms) -> CGTopology | None:
    """The CG topology of Atoms whose residue and atom names are those of a CG mapping, else None."""
    names = [str(n).strip() for n in atoms.arrays["atomtypes"]]
    residues = [str(r).strip() for r in atoms.arrays["residuenames"]]
    numbers = atoms.arrays.get("residuenumbers", np.zeros(len(atoms), dtype=int))
    mapping = "ca" if set(names) == {"CA"} else "5bead"
    if not set(names) <= set(BEAD_NAMES[mapping]):
        return None  # an all-atom structure: not CG names
    topology = mdtraj.Topology()
    chain, residue, previous = topology.add_chain(), None, None
    for name, residue_name, number, symbol in zip(names, residues, numbers, atoms.get_chemical_symbols(),
                                                  strict=True):  # fmt: skip
        if residue is None or number != previous:
            residue, previous = topology.add_residue(residue_name, chain, resSeq=int(number)), number
        topology.add_atom(name, mdtraj.element.get_by_symbol(symbol), residue)
    frame = mdtraj.Trajectory(atoms.positions[None] * NM_PER_ANGSTROM, topology)
    try:
        cg, _ = map_to_cg(frame, mapping, name=atoms.get_chemical_formula(), source="ASE Atoms")
    except ValueError:
        return None
    return cg if cg.n_beads == len(atoms) else None


def pdb_atoms(path: str | os.PathLike, frame: int = 0) -> Atoms:
    """All-atom ``Atoms`` (open space, positions in Å) of one model of a PDB file.

    Elements come from mdtraj, which reads residue-aware atom names (``CA`` of an
    amino acid is carbon); ASE's own PDB reader guesses from the name alone and
    can turn an alpha carbon into calcium when the element column is empty.
    """
    structure = mdtraj.load_frame(str(path), frame)
    symbols = [atom.element.symbol for atom in structure.topology.atoms]
    return Atoms(symbols=symbols, positions=structure.xyz[0].astype(np.float64) / NM_PER_ANGSTROM)


def hydrogen_bond_constraints(atoms: Atoms, max_length_angstrom: float = 1.25) -> FixBondLengths:
    """ASE constraints fixing every X–H bond length (each H to its nearest heavy atom).

    Models trained on data with constrained X–H bonds (such as ``ala2-allatom``)
    never saw those bonds stretch; apply this with ``atoms.set_constraint(...)``
    for MD and optimisation, as the reference simulation did (RATTLE in ASE).

    Args:
        atoms: all-atom structure; every H must have a heavy atom within ``max_length_angstrom``.
        max_length_angstrom: Å, the longest distance counted as a bond.
    """
    positions = atoms.positions
    heavy = np.flatnonzero(atoms.numbers != 1)
    pairs = []
    for h in np.flatnonzero(atoms.numbers == 1):
        distances = np.linalg.norm(positions[heavy] - positions[h], axis=1)
        if len(distances) == 0 or distances.min() > max_length_angstrom:
            raise AtomsError(f"hydrogen {h} has no heavy atom within {max_length_angstrom} Å")
        pairs.append((int(heavy[np.argmin(distances)]), int(h)))
    return FixBondLengths(pairs)
