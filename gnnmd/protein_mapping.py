"""Coarse-grained (CG) mapping of all-atom protein structures (mdtraj-based): :func:`map_to_cg`.

Units: positions in nm (mdtraj's own unit, also gnnmd's internal length unit, see
:mod:`gnnmd.units`), masses in amu (g/mol).

Three slice mappings are supported; in each every bead sits exactly on one atom of
the all-atom structure (no centre of mass):

==========  =================================================================
mapping     beads per residue, in this order
==========  =================================================================
"5bead"     N, CA, CB, C, O (glycine has no CB: N, CA, C, O)
"ca"        CA
"backbone"  N, CA, C; an ACE cap gives its carbonyl C, an NME cap its N (CGnet's
            alanine dipeptide: ACE.C, ALA.N, ALA.CA, ALA.C, NME.N)
==========  =================================================================

**Masses.** A bead's mass is the element mass of the atom it sits on, from
mdtraj's element table (N 14.007, C 12.011, O 15.999 amu). Hydrogens and side
chain atoms beyond CB are dropped, not lumped into the beads.

**Bead types** follow CGSchNet: residue identity x bead name, written
``"RES.BEAD"`` (``"TYR.CA"``, ``"GLY.N"``). Residue names are canonical: force
field aliases (HIE, CYX, ...) are resolved through :data:`RESIDUE_ALIASES`.

**Protein residues.** A residue is protein when its canonical name is in
:data:`STANDARD_RESIDUES` (the 20 amino acids plus norleucine, NLE, used by villin
2F4K). Water, ions and other hetero groups are skipped silently; a residue with
the backbone atoms N, CA and C but an unknown name raises
:class:`~gnnmd.errors.TopologyError` rather than being dropped.

**Bonded graph.** 5bead: N-CA, CA-C, C-O, CA-CB within each residue, and the
peptide bond C(i)-N(i+1) between consecutive residues of one chain when the C-N
distance in the first frame is below 0.2 nm. ca: CA(i)-CA(i+1) between
consecutive residues of one chain when closer than 0.45 nm. A chain break thus
makes no bond. Angles and dihedrals are every bonded path of 3 and 4 beads.
"""

from __future__ import annotations

from collections.abc import Sequence

import mdtraj
import numpy as np

from gnnmd.errors import TopologyError
from gnnmd.topology import CGTopology, bonded_paths, canonical_bonds, check_mapping

#: Canonical residue names treated as protein: the 20 amino acids and norleucine.
STANDARD_RESIDUES: tuple[str, ...] = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU",
    "LYS", "MET", "NLE", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip

#: Protonation-state and force-field spellings mapped to their canonical name.
#: MSE (selenomethionine) maps to MET: its N, CA, CB, C, O beads are MET's.
RESIDUE_ALIASES: dict[str, str] = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
    "HISD": "HIS", "HISE": "HIS", "HISH": "HIS",
    "CYX": "CYS", "CYM": "CYS", "CYS2": "CYS",
    "ASH": "ASP", "ASPP": "ASP",
    "GLH": "GLU", "GLUP": "GLU",
    "LYN": "LYS", "LSN": "LYS",
    "ARN": "ARG",
    "TYM": "TYR",
    "MSE": "MET",
}  # fmt: skip

BEAD_NAMES: dict[str, tuple[str, ...]] = {
    "5bead": ("N", "CA", "CB", "C", "O"),
    "ca": ("CA",),
    "backbone": ("N", "CA", "C"),
}
#: Terminal caps the backbone mapping keeps (their atom that continues the backbone).
CAP_BEADS: dict[str, tuple[str, ...]] = {"ACE": ("C",), "NME": ("N",)}

#: Bonds within one residue (5bead), by bead name.
_INTRA_RESIDUE_BONDS = (("N", "CA"), ("CA", "C"), ("C", "O"), ("CA", "CB"))
#: Largest distance (nm) for the bond between consecutive residues of one chain.
PEPTIDE_BOND_MAX_NM = 0.2
CA_BOND_MAX_NM = 0.45
#: Atoms that make a residue an amino acid (used to refuse unknown residue names).
_BACKBONE = frozenset({"N", "CA", "C"})


def canonical_residue_name(name: str) -> str:
    """The canonical 3-letter name of residue ``name`` (aliases resolved, upper case)."""
    upper = name.strip().upper()
    return RESIDUE_ALIASES.get(upper, upper)


def _residue_bead_names(residue: str, mapping: str) -> tuple[str, ...]:
    if residue in CAP_BEADS:
        return CAP_BEADS[residue] if mapping == "backbone" else ()
    names = BEAD_NAMES[mapping]
    return tuple(n for n in names if not (residue == "GLY" and n == "CB"))


def protein_bead_vocabulary(mapping: str = "5bead") -> tuple[str, ...]:
    """Every bead type ``"RES.BEAD"`` of ``mapping`` for the residues in STANDARD_RESIDUES.

    Sorted by residue name, then by bead order within the residue (N, CA, CB, C, O);
    glycine has no CB. 5bead gives 104 types, ca gives 21, backbone 65 (with the caps).
    """
    check_mapping(mapping)
    residues = sorted(STANDARD_RESIDUES + (tuple(CAP_BEADS) if mapping == "backbone" else ()))
    return tuple(f"{r}.{b}" for r in residues for b in _residue_bead_names(r, mapping))


def _chain_label(residue: mdtraj.core.topology.Residue) -> str:
    chain_id = getattr(residue.chain, "chain_id", None)
    return str(chain_id) if chain_id else str(residue.chain.index)


def _where(source: str, residue: mdtraj.core.topology.Residue) -> str:
    return f"{source}: chain {_chain_label(residue)} residue {residue.name} {residue.resSeq}"


def _protein_residues(
    top: mdtraj.Topology,
    source: str,
    chains: Sequence[str] | None,
    residues: tuple[int, int] | None,
    caps: bool = False,
) -> list[mdtraj.core.topology.Residue]:
    """Protein residues in topology order (with ACE/NME caps when ``caps``), optionally restricted
    to chains and a resSeq range."""
    selected = []
    for residue in top.residues:
        if chains is not None and _chain_label(residue) not in chains:
            continue
        if residues is not None and not residues[0] <= residue.resSeq <= residues[1]:
            continue
        name = canonical_residue_name(residue.name)
        if name in STANDARD_RESIDUES or (caps and name in CAP_BEADS):
            selected.append(residue)
        elif _BACKBONE <= {atom.name for atom in residue.atoms}:
            allowed = ", ".join(STANDARD_RESIDUES)
            aliases = ", ".join(sorted(RESIDUE_ALIASES))
            raise TopologyError(
                f"{_where(source, residue)}: unknown amino acid {residue.name!r} (it has "
                f"backbone atoms N, CA, C); allowed residue names: {allowed}; "
                f"accepted aliases: {aliases}"
            )
    return selected


def _bead_atoms(
    residue: mdtraj.core.topology.Residue, mapping: str, source: str
) -> list[mdtraj.core.topology.Atom]:
    """The atoms the beads of ``residue`` sit on, in bead order."""
    by_name: dict[str, mdtraj.core.topology.Atom] = {}
    for atom in residue.atoms:
        by_name.setdefault(atom.name.strip().upper(), atom)
    names = _residue_bead_names(canonical_residue_name(residue.name), mapping)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise TopologyError(
            f"{_where(source, residue)}: missing atom {missing[0]!r} required by the "
            f"{mapping!r} mapping (needs {', '.join(names)}; has "
            f"{', '.join(sorted(by_name))})"
        )
    return [by_name[n] for n in names]


def _atom_mass(atom: mdtraj.core.topology.Atom, source: str) -> float:
    element = atom.element
    mass = getattr(element, "mass", None)
    if mass is None or not mass > 0:
        raise TopologyError(
            f"{_where(source, atom.residue)}: atom {atom.name!r} has no element with a "
            f"positive mass (element {element!r})"
        )
    return float(mass)


def _link_bonds(
    residues: list[mdtraj.core.topology.Residue],
    first_bead: list[dict[str, int]],
    xyz0: np.ndarray,
    mapping: str,
) -> list[tuple[int, int]]:
    """Bonds between consecutive residues of one chain that are close enough in frame 0."""
    head, tail, cutoff = ("CA", "CA", CA_BOND_MAX_NM) if mapping == "ca" else ("C", "N", PEPTIDE_BOND_MAX_NM)
    bonds = []
    for r in range(len(residues) - 1):
        if residues[r].chain.index != residues[r + 1].chain.index:
            continue
        if head not in first_bead[r] or tail not in first_bead[r + 1]:
            continue  # an NME cap ends the chain, an ACE cap begins it
        i, j = first_bead[r][head], first_bead[r + 1][tail]
        if np.linalg.norm(xyz0[j] - xyz0[i]) < cutoff:
            bonds.append((i, j))
    return bonds


def map_to_cg(
    traj: mdtraj.Trajectory,
    mapping: str = "5bead",
    name: str = "molecule",
    source: str = "<memory>",
    *,
    chains: Sequence[str] | None = None,
    residues: tuple[int, int] | None = None,
) -> tuple[CGTopology, np.ndarray]:
    """Map an all-atom protein to CG beads (slice mapping: each bead sits on one atom).

    Args:
        traj: all-atom structure(s); positions in nm. The first frame decides which
            consecutive residues are bonded (chain breaks make no bond).
        mapping: ``"5bead"`` (N, CA, CB, C, O), ``"ca"`` or ``"backbone"`` (N, CA, C and the
            ACE/NME caps' C and N).
        name: molecule name stored in the topology.
        source: file name used in error messages.
        chains: keep only residues of these chain ids (default: all chains).
        residues: keep only residues with ``first <= resSeq <= last`` (inclusive).

    Returns:
        The topology and CG positions, (n_frames, n_beads, 3) float64 in nm.

    Raises:
        TopologyError: no protein residues, an amino acid with an unknown name, or a
            missing bead atom; the message names the source, chain and residue.
    """
    check_mapping(mapping)
    chosen = _protein_residues(traj.topology, source, chains, residues, caps=mapping == "backbone")
    if not chosen:
        raise TopologyError(
            f"{source}: no protein residues found (selection chains={chains}, "
            f"residues={residues}); known residue names: {', '.join(STANDARD_RESIDUES)}"
        )
    atoms, first_bead, intra = [], [], []
    for residue in chosen:
        bead_atoms = _bead_atoms(residue, mapping, source)
        index = {atom.name.strip().upper(): len(atoms) + k for k, atom in enumerate(bead_atoms)}
        first_bead.append(index)
        intra += [(index[a], index[b]) for a, b in _INTRA_RESIDUE_BONDS if {a, b} <= index.keys()]
        atoms += bead_atoms
    atom_indices = np.array([a.index for a in atoms], dtype=np.int64)
    positions = np.asarray(traj.xyz[:, atom_indices, :], dtype=np.float64)
    bonds = canonical_bonds(intra + _link_bonds(chosen, first_bead, positions[0], mapping))
    angles, dihedrals = bonded_paths(len(atoms), bonds)
    residue_names = tuple(canonical_residue_name(a.residue.name) for a in atoms)
    bead_names = tuple(a.name.strip().upper() for a in atoms)
    topology = CGTopology(
        name=name,
        mapping=mapping,
        bead_names=bead_names,
        residue_names=residue_names,
        residue_ids=np.array([a.residue.resSeq for a in atoms], dtype=np.int64),
        chain_ids=tuple(_chain_label(a.residue) for a in atoms),
        bead_types=tuple(f"{r}.{b}" for r, b in zip(residue_names, bead_names, strict=True)),
        masses_amu=np.array([_atom_mass(a, source) for a in atoms], dtype=np.float64),
        bonds=bonds,
        angles=angles,
        dihedrals=dihedrals,
        atom_indices=atom_indices,
        source=source,
        residue_variants=tuple(a.residue.name.strip().upper() for a in atoms),
    )
    return topology, positions
