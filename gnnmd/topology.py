"""The coarse-grained molecule: beads, their types and masses, and the bonded graph.

:class:`CGTopology` is what every later stage reads (model, engines, reporters). It is
made from an all-atom protein by :func:`gnnmd.protein_mapping.map_to_cg`, or bead by bead
by :func:`custom_topology` (datasets, imported models, all-atom molecules).

**Bonded graph.** Angles and dihedrals are every bonded path of 3 and 4 beads
(:func:`bonded_paths`); bonds are rows i<j, sorted.

Units: masses in amu (g/mol); positions, where they appear, in nm (:mod:`gnnmd.units`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import mdtraj
import numpy as np
from ase.data import chemical_symbols

from gnnmd.errors import TopologyError

#: The protein mappings of :mod:`gnnmd.protein_mapping` (see its table).
MAPPINGS = ("5bead", "ca", "backbone")
#: Kind of a topology built bead by bead (:func:`custom_topology`), e.g. from a dataset.
CUSTOM_MAPPING = "custom"


def check_mapping(mapping: str) -> None:
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown CG mapping {mapping!r}; allowed: {list(MAPPINGS)}")


def _frozen(array: np.ndarray, dtype: type, shape_tail: tuple[int, ...]) -> np.ndarray:
    out = np.array(array, dtype=dtype).reshape((-1, *shape_tail))
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class CGTopology:
    """A coarse-grained molecule: beads, their types and masses, and the bonded graph.

    Attributes:
        name: molecule name, e.g. ``"chignolin"``.
        mapping: ``"5bead"`` or ``"ca"``.
        bead_names: per bead, ``"N"``, ``"CA"``, ``"CB"``, ``"C"`` or ``"O"``.
        residue_names: per bead, canonical 3-letter residue name.
        residue_ids: (n,) int64, PDB residue sequence number of each bead.
        chain_ids: per bead, chain identifier.
        bead_types: per bead, ``"RES.BEAD"`` (e.g. ``"TYR.CA"``).
        masses_amu: (n,) float64 bead masses in amu, all > 0.
        bonds: (B, 2) int64, rows i<j, sorted.
        angles: (A, 3) int64 bonded paths i-j-k with i<k, sorted.
        dihedrals: (D, 4) int64 bonded paths i-j-k-l with (i, j) < (l, k), sorted.
        atom_indices: (n,) int64, index in the source all-atom topology of each bead's atom.
        source: file the molecule came from, or ``"<memory>"``; used in error messages.
        residue_variants: per bead, the residue name as the source spells it (``"HSD"``, ``"HIE"``;
            upper case), for models with a type of their own for a variant (mlcg's HSD); empty
            (the default): the canonical ``residue_names``.
    """

    name: str
    mapping: str
    bead_names: tuple[str, ...]
    residue_names: tuple[str, ...]
    residue_ids: np.ndarray
    chain_ids: tuple[str, ...]
    bead_types: tuple[str, ...]
    masses_amu: np.ndarray
    bonds: np.ndarray
    angles: np.ndarray
    dihedrals: np.ndarray
    atom_indices: np.ndarray
    source: str = "<memory>"
    residue_variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mapping != CUSTOM_MAPPING:
            check_mapping(self.mapping)
        fields = {
            "residue_ids": _frozen(self.residue_ids, np.int64, ()),
            "masses_amu": _frozen(self.masses_amu, np.float64, ()),
            "bonds": _frozen(self.bonds, np.int64, (2,)),
            "angles": _frozen(self.angles, np.int64, (3,)),
            "dihedrals": _frozen(self.dihedrals, np.int64, (4,)),
            "atom_indices": _frozen(self.atom_indices, np.int64, ()),
        }
        for key, value in fields.items():
            object.__setattr__(self, key, value)
        for key in ("bead_names", "residue_names", "chain_ids", "bead_types", "residue_variants"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if not self.residue_variants:
            object.__setattr__(self, "residue_variants", self.residue_names)
        self._validate()

    def _validate(self) -> None:
        n = len(self.bead_names)
        per_bead = ("residue_names", "residue_ids", "chain_ids", "bead_types", "masses_amu",
                    "atom_indices", "residue_variants")  # fmt: skip
        for key in per_bead:
            if len(getattr(self, key)) != n:
                raise ValueError(f"{self.source}: {key} has {len(getattr(self, key))} entries, "
                                 f"expected one per bead ({n})")  # fmt: skip
        if n and not np.all(self.masses_amu > 0):
            raise ValueError(f"{self.source}: bead masses must be > 0 amu")
        for key in ("bonds", "angles", "dihedrals"):
            index = getattr(self, key)
            if index.size and (index.min() < 0 or index.max() >= n):
                raise ValueError(f"{self.source}: {key} index out of range for {n} beads")

    @property
    def n_beads(self) -> int:
        """Number of beads."""
        return len(self.bead_names)

    def excluded_pairs(self, order: int = 2) -> np.ndarray:
        """Bead pairs separated by 1..``order`` bonds, as (X, 2) int64, rows i<j, sorted, unique.

        ``order`` is 0 (nothing excluded), 1 (bonds), 2 (+ 1-3 pairs of angles) or
        3 (+ 1-4 pairs of dihedrals).
        """
        valid = isinstance(order, (int, np.integer)) and not isinstance(order, bool)
        if not valid or not 0 <= order <= 3:
            raise ValueError(f"exclusion order must be an integer in 0..3, got {order!r}")
        ends = [self.bonds, self.angles[:, [0, 2]], self.dihedrals[:, [0, 3]]][:order]
        if not ends:
            return np.zeros((0, 2), dtype=np.int64)
        pairs = np.sort(np.concatenate(ends).reshape(-1, 2), axis=1)
        return np.unique(pairs, axis=0).astype(np.int64).reshape(-1, 2)

    def to_mdtraj(self) -> mdtraj.Topology:
        """An mdtraj topology with one atom per bead, for writing CG trajectories (PDB, DCD).

        Atom names are the bead names, elements those of the mapped atoms, residues
        and chains as in the source, and the CG bonds are added.
        """
        top = mdtraj.Topology()
        chain = residue = None
        seen: set[str] = set()
        for i in range(self.n_beads):
            resid, name = int(self.residue_ids[i]), self.bead_names[i]
            if chain is None or self._new_chain(i):
                chain, residue = top.add_chain(chain_id=self.chain_ids[i]), None
            if residue is None or resid != int(self.residue_ids[i - 1]) or name in seen:
                residue, seen = top.add_residue(self.residue_names[i], chain, resSeq=resid), set()
            top.add_atom(name, _bead_element(self.masses_amu[i]), residue)
            seen.add(name)
        atoms = list(top.atoms)
        for i, j in self.bonds:
            top.add_bond(atoms[int(i)], atoms[int(j)])
        return top

    def _new_chain(self, i: int) -> bool:
        """Bead i starts a chain: the chain id changes or the residue number goes back (copies)."""
        chains, resids = self.chain_ids, self.residue_ids
        return chains[i] != chains[i - 1] or resids[i] < resids[i - 1]

    def replicate(self, n: int) -> CGTopology:
        """``n`` non-interacting copies back to back (bonded indices offset per copy).

        Per-bead fields are tiled; ``atom_indices`` of every copy point at the same
        source atoms. The name becomes ``"<name>_x<n>"`` for n > 1.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"replicate() needs an integer n >= 1, got {n!r}")
        n = int(n)
        offsets = np.arange(n, dtype=np.int64) * self.n_beads

        def tile(index: np.ndarray) -> np.ndarray:
            return (index[None, :, :] + offsets[:, None, None]).reshape(-1, index.shape[1])

        return dataclasses.replace(
            self,
            name=self.name if n == 1 else f"{self.name}_x{n}",
            bead_names=self.bead_names * n,
            residue_names=self.residue_names * n,
            residue_variants=self.residue_variants * n,
            residue_ids=np.tile(self.residue_ids, n),
            chain_ids=self.chain_ids * n,
            bead_types=self.bead_types * n,
            masses_amu=np.tile(self.masses_amu, n),
            bonds=tile(self.bonds),
            angles=tile(self.angles),
            dihedrals=tile(self.dihedrals),
            atom_indices=np.tile(self.atom_indices, n),
        )


def _bead_element(mass_amu: float) -> mdtraj.element.Element:
    """The element of a bead's mapped atom, recovered from its mass (N, C, O, S, ...)."""
    candidates = [mdtraj.element.get_by_symbol(s) for s in ("H", "C", "N", "O", "S", "P", "Se")]
    return min(candidates, key=lambda e: abs(e.mass - mass_amu))


def canonical_bonds(bonds: Sequence[tuple[int, int]]) -> np.ndarray:
    if not bonds:
        return np.zeros((0, 2), dtype=np.int64)
    array = np.sort(np.asarray(bonds, dtype=np.int64), axis=1)
    return np.unique(array, axis=0)


def _neighbours(n_beads: int, bonds: np.ndarray) -> list[list[int]]:
    adjacency: list[list[int]] = [[] for _ in range(n_beads)]
    for i, j in bonds.tolist():
        adjacency[i].append(j)
        adjacency[j].append(i)
    return [sorted(a) for a in adjacency]


def bonded_paths(n_beads: int, bonds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All angles (A, 3) and proper dihedrals (D, 4) of a bond graph, canonical and sorted.

    An angle i-j-k is stored with i<k; a dihedral i-j-k-l with (i, j) < (l, k).
    """
    adjacency = _neighbours(n_beads, bonds)
    angles = {(i, j, k) for j, nb in enumerate(adjacency) for i in nb for k in nb if i < k}
    dihedrals = set()
    for j, k in bonds.tolist():
        for i in adjacency[j]:
            for m in adjacency[k]:
                if i in (j, k) or m in (j, k) or i == m:
                    continue
                path = (i, j, k, m)
                dihedrals.add(path if (i, j) < (m, k) else path[::-1])
    return (
        np.array(sorted(angles), dtype=np.int64).reshape(-1, 3),
        np.array(sorted(dihedrals), dtype=np.int64).reshape(-1, 4),
    )


#: Residue name of the beads of :func:`custom_topology` whose type has no ``"RES."`` part.
PLAIN_TYPE_RESIDUE = "MOL"


def _split_type(bead_type: str, source: str) -> tuple[str, str]:
    """(residue name, bead name) of ``"RES.BEAD"``, or (PLAIN_TYPE_RESIDUE, type) of a plain type."""
    if not isinstance(bead_type, str) or not bead_type:
        raise TopologyError(f"{source}: bead type {bead_type!r} must be a non-empty string")
    if "." not in bead_type:
        return PLAIN_TYPE_RESIDUE, bead_type
    residue, bead = bead_type.split(".", 1)
    if not residue or not bead:
        raise TopologyError(f"{source}: bead type {bead_type!r} is not of the form 'RES.BEAD'")
    return residue, bead


def custom_topology(
    name: str,
    bead_types: Sequence[str],
    masses_amu: Sequence[float],
    bonds: Sequence[tuple[int, int]],
    source: str = "<memory>",
    residue_ids: Sequence[int] | None = None,
) -> CGTopology:
    """A topology given bead by bead (mapping ``"custom"``), angles and dihedrals derived from ``bonds``.

    Args:
        name: molecule name.
        bead_types: per bead ``"RES.BEAD"`` (e.g. ``"ACE.C"``), residue and bead names taken
            from the two halves; or a plain type without a dot, such as an element symbol
            (``"C"``) for all-atom models, which is its own bead name in residue
            :data:`PLAIN_TYPE_RESIDUE`.
        masses_amu: per bead mass in amu (> 0).
        bonds: bonded bead pairs (may be empty, e.g. for all-atom models without priors).
        source: where the molecule came from, for error messages.
        residue_ids: per bead residue number (default: consecutive per residue name change).
    """
    parts = [_split_type(t, source) for t in bead_types]
    if residue_ids is None:
        residue_ids = list(np.cumsum([i == 0 or parts[i][0] != parts[i - 1][0] for i in range(len(parts))]))
    n = len(bead_types)
    canonical = canonical_bonds([tuple(b) for b in bonds])
    angles, dihedrals = bonded_paths(n, canonical)
    return CGTopology(
        name=name,
        mapping=CUSTOM_MAPPING,
        bead_names=tuple(p[1] for p in parts),
        residue_names=tuple(p[0] for p in parts),
        residue_ids=np.asarray(residue_ids, dtype=np.int64),
        chain_ids=("A",) * n,
        bead_types=tuple(bead_types),
        masses_amu=np.asarray(masses_amu, dtype=np.float64),
        bonds=canonical,
        angles=angles,
        dihedrals=dihedrals,
        atom_indices=np.arange(n, dtype=np.int64),
        source=source,
    )


_ELEMENTS = frozenset(chemical_symbols[1:])


def is_element_model(vocabulary: Sequence[str]) -> bool:
    """Whether a model's types are all element symbols: an all-atom model, which reads each atom's element
    (and takes every pair inside the cutoff) instead of CG bead types and bonds."""
    return len(vocabulary) > 0 and all(t in _ELEMENTS for t in vocabulary)
