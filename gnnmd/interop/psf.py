"""TorchMD's coarse-grained PSF topologies as gnnmd CG topologies (read with ParmEd).

mdtraj refuses these files ("Nonsequential atom indices") and OpenMM's reader
fails on their empty sections; ParmEd reads them. Bonds, angles and dihedrals are
taken as the file lists them: TorchMD's priors act on exactly those terms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from gnnmd.errors import TopologyError
from gnnmd.topology import CUSTOM_MAPPING, CGTopology


def read_psf(
    path: Path, bead_type_of: Callable[[str, str], str], masses: Mapping[str, float] | None = None
) -> CGTopology:
    """The CG topology in a PSF file.

    Args:
        path: the PSF file.
        bead_type_of: (PSF atom type, residue name) -> the gnnmd bead type (vocabulary name).
        masses: per PSF atom type mass in amu, used where the PSF's own mass is 0 (TorchMD
            reads masses from its force field; its PSF writer leaves them 0).
    """
    from parmed.charmm import CharmmPsfFile

    try:
        psf = CharmmPsfFile(str(path))
    except Exception as error:  # ParmEd raises many types for malformed files
        raise TopologyError(f"{path}: not a readable PSF file ({error})") from None
    atoms = list(psf.atoms)
    if not atoms:
        raise TopologyError(f"{path}: the PSF lists no atoms")
    types = [str(atom.type) for atom in atoms]
    bead_types = tuple(bead_type_of(t, atom.residue.name) for t, atom in zip(types, atoms, strict=True))
    mass = [_mass(path, i, atom, masses or {}) for i, atom in enumerate(atoms)]
    bonds = _terms([(b.atom1.idx, b.atom2.idx) for b in psf.bonds], 2)
    angles = _terms([(a.atom1.idx, a.atom2.idx, a.atom3.idx) for a in psf.angles], 3)
    dihedrals = _terms([(d.atom1.idx, d.atom2.idx, d.atom3.idx, d.atom4.idx) for d in psf.dihedrals], 4)
    return CGTopology(
        name=path.stem,
        mapping=CUSTOM_MAPPING,
        bead_names=tuple(str(atom.name) for atom in atoms),
        residue_names=tuple(str(atom.residue.name) for atom in atoms),
        residue_ids=np.array([atom.residue.number for atom in atoms], dtype=np.int64),
        chain_ids=tuple(str(atom.residue.chain or "A") for atom in atoms),
        bead_types=bead_types,
        masses_amu=np.array(mass, dtype=np.float64),
        bonds=bonds,
        angles=angles,
        dihedrals=dihedrals,
        atom_indices=np.arange(len(atoms), dtype=np.int64),
        source=str(path),
    )


def _mass(path: Path, index: int, atom, masses: Mapping[str, float]) -> float:
    if atom.mass > 0:
        return float(atom.mass)
    if str(atom.type) in masses:
        return float(masses[str(atom.type)])
    raise TopologyError(
        f"{path}: atom {index + 1} (type {atom.type!r}) has mass {atom.mass} and the force field lists "
        "no mass for its type; give masses in the PSF or the force field's 'masses' section"
    )


def _terms(rows: list[tuple[int, ...]], order: int) -> np.ndarray:
    """Canonical orientation (first index below last; dihedrals by (i, j) vs (l, k)), sorted, unique."""
    oriented = []
    for row in rows:
        flip = row[::-1]
        if order == 4:
            oriented.append(flip if (row[0], row[1]) > (row[3], row[2]) else row)
        else:
            oriented.append(flip if row[0] > row[-1] else row)
    if not oriented:
        return np.zeros((0, order), dtype=np.int64)
    return np.unique(np.array(oriented, dtype=np.int64), axis=0)
