"""TorchMD's coarse-grained PSF topologies as gnnmd CG topologies (read with ParmEd).

mdtraj refuses these files ("Nonsequential atom indices") and OpenMM's reader
fails on their empty sections; ParmEd reads them. Bonds, angles and dihedrals are
taken as the file lists them: TorchMD's priors act on exactly those terms.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from gnnmd.errors import TopologyError
from gnnmd.nn.priors.base import canonical_tuple
from gnnmd.topology import CUSTOM_MAPPING, CGTopology

if TYPE_CHECKING:
    from gnnmd.systems import System


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
    """Each term in gnnmd's orientation (the one CGTopology stores), sorted, unique."""
    oriented = [canonical_tuple(tuple(row)) for row in rows]
    if not oriented:
        return np.zeros((0, order), dtype=np.int64)
    return np.unique(np.array(oriented, dtype=np.int64), axis=0)


def psf_topology_for_model(path: Path, vocabulary: list[str], masses_amu: Mapping[str, float]) -> CGTopology:
    """A PSF's topology typed for a model: a PSF atom type that is in the vocabulary is its own
    bead type; otherwise the TorchMD CG convention names it (``CAY`` -> ``TYR.CA``).

    ``masses_amu`` (per bead type, as an imported checkpoint records them) fills in massless atoms.
    """
    from gnnmd.interop.torchmdnet import TORCHMD_CG_PSF_TYPES

    known = set(vocabulary)
    conventional = {psf: bead for psf, bead in TORCHMD_CG_PSF_TYPES.items() if bead in known}

    def bead_type(psf_type: str, residue: str) -> str:
        if psf_type in known:
            return psf_type
        if psf_type in conventional:
            return conventional[psf_type]
        raise TopologyError(
            f"{path}: PSF atom type {psf_type!r} (residue {residue}) is neither a bead type of the model "
            "nor a TorchMD CG convention type of one"
        )

    by_psf_type = {psf: masses_amu[bead] for psf, bead in conventional.items() if bead in masses_amu}
    by_psf_type.update({name: mass for name, mass in masses_amu.items() if name in known})
    return read_psf(Path(path), bead_type, by_psf_type)


def psf_system(
    path: Path, coordinates: Path | None, vocabulary: list[str], masses_amu: Mapping[str, float]
) -> System:
    """A simulatable system from a TorchMD CG PSF and a coordinates file (XTC, DCD, PDB: first frame)."""
    import mdtraj

    from gnnmd.systems import System

    if coordinates is None:
        raise TopologyError(f"{path}: a PSF holds no positions; give --coordinates (XTC, DCD or PDB)")
    topology = psf_topology_for_model(Path(path), vocabulary, masses_amu)
    try:
        frames = mdtraj.load(str(coordinates), top=topology.to_mdtraj())
    except Exception as error:  # mdtraj raises many types for unreadable or mismatched files
        raise TopologyError(f"{coordinates}: not readable as coordinates of {path} ({error})") from None
    positions = np.asarray(frames.xyz[0], dtype=np.float64)
    if not np.isfinite(positions).all():
        raise TopologyError(f"{coordinates}: the first frame holds non-finite positions")
    return System(
        name=Path(path).stem,
        topology=topology,
        positions_nm=positions,
        description=f"TorchMD CG topology {Path(path).name}, first frame of {Path(coordinates).name}",
        pdb_path=Path(path),
        coordinates_path=Path(coordinates),
    )
