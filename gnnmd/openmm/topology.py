"""CG topologies on the OpenMM side: to an ``openmm.app.Topology`` and back.

OpenMM sees one particle per bead. Particle i is bead i of the
:class:`~gnnmd.topology.CGTopology`; with R replicas, bead i of replica r is
particle ``r * n_beads + i``. Units: nm (positions, box), amu (masses).

Reading an OpenMM topology back (:func:`cg_topology_from_openmm`, used by the
openmm-ml registration) accepts exactly what gnnmd writes: protein residues
whose atoms are beads (``N, CA, CB, C, O`` or ``CA`` alone), with the backbone
links between consecutive residues given as topology bonds (a CG PDB written by
gnnmd has them; OpenMM's ``PDBFile`` also adds them for standard residues).
"""

from __future__ import annotations

import mdtraj
import numpy as np
import openmm.app
import openmm.unit

from gnnmd.errors import TopologyError
from gnnmd.protein_mapping import (
    BEAD_NAMES,
    RESIDUE_ALIASES,
    STANDARD_RESIDUES,
    canonical_residue_name,
    map_to_cg,
)
from gnnmd.topology import CGTopology, bonded_paths

#: Bonds within one residue of the 5-bead mapping, by bead name (as gnnmd.topology).
INTRA_RESIDUE_BONDS = frozenset(
    {frozenset(pair) for pair in (("N", "CA"), ("CA", "C"), ("C", "O"), ("CA", "CB"))}
)
#: The bond between consecutive residues: (bead of residue i, bead of residue i+1).
LINK_BONDS = {"5bead": ("C", "N"), "ca": ("CA", "CA")}
#: The element of the atom each bead sits on (the slice mapping puts beads on atoms).
BEAD_ELEMENTS = {"N": "N", "CA": "C", "CB": "C", "C": "C", "O": "O"}


def openmm_topology(topology: CGTopology, box_nm: np.ndarray | None = None) -> openmm.app.Topology:
    """An OpenMM topology with one atom per bead (names, residues, chains and bonds of ``topology``).

    Args:
        topology: the CG topology (use ``topology.replicate(R)`` for R replicas).
        box_nm: optional (3, 3) periodic box vectors in nm, as rows.
    """
    result = topology.to_mdtraj().to_openmm()
    if box_nm is not None:
        vectors = [openmm.Vec3(*map(float, row)) for row in np.asarray(box_nm, dtype=np.float64)]
        result.setPeriodicBoxVectors(vectors * openmm.unit.nanometer)
    return result


def bead_mass_amu(bead_name: str) -> float:
    """Mass in amu of a bead named ``bead_name``: that of the atom it sits on (mdtraj's element table)."""
    return float(mdtraj.element.get_by_symbol(BEAD_ELEMENTS[bead_name]).mass)


def _where(source: str, residue: openmm.app.topology.Residue) -> str:
    return f"{source}: chain {residue.chain.id} residue {residue.name} {residue.id} (index {residue.index})"


def _residue_number(residue: openmm.app.topology.Residue) -> int:
    try:
        return int(residue.id)
    except (TypeError, ValueError):
        return residue.index + 1


def _mapping_of(topology: openmm.app.Topology) -> str:
    names = {atom.name.strip().upper() for atom in topology.atoms()}
    return "ca" if names == {"CA"} else "5bead"


def _check_residue(residue: openmm.app.topology.Residue, mapping: str, source: str) -> list[str]:
    """The bead names of ``residue`` in atom order, after checking it is a complete CG residue."""
    canonical = canonical_residue_name(residue.name)
    if canonical not in STANDARD_RESIDUES:
        raise TopologyError(
            f"{_where(source, residue)}: unknown residue {residue.name!r}; gnnmd models take CG protein "
            f"residues: {', '.join(STANDARD_RESIDUES)} (aliases: {', '.join(sorted(RESIDUE_ALIASES))})"
        )
    names = [atom.name.strip().upper() for atom in residue.atoms()]
    allowed = BEAD_NAMES[mapping]
    for name in names:
        if name not in allowed:
            raise TopologyError(
                f"{_where(source, residue)}: atom {name!r} is not a bead of the {mapping!r} mapping "
                f"({', '.join(allowed)}); this looks like an all-atom topology: map it to CG first "
                "(gnnmd.systems.load_system, or the CG PDB that `gnnmd openmm-xml` writes)"
            )
    expected = [n for n in allowed if not (canonical == "GLY" and n == "CB")]
    if sorted(names) != sorted(expected):
        raise TopologyError(
            f"{_where(source, residue)}: has beads {names}, expected exactly {expected} ({mapping} mapping)"
        )
    return names


def _link_bonds(topology: openmm.app.Topology, mapping: str, source: str) -> list[tuple[int, int]]:
    """Topology bonds between residues, each checked to be a backbone link of consecutive residues."""
    head, tail = LINK_BONDS[mapping]
    links = []
    for bond in topology.bonds():
        a, b = sorted((bond.atom1, bond.atom2), key=lambda atom: atom.index)
        if a.residue is b.residue:
            continue
        pair = (a.name.strip().upper(), b.name.strip().upper())
        consecutive = a.residue.chain is b.residue.chain and b.residue.index == a.residue.index + 1
        if pair != (head, tail) or not consecutive:
            raise TopologyError(
                f"{_where(source, a.residue)}: bond {pair[0]}-{pair[1]} to {b.residue.name} {b.residue.id} "
                f"is not a CG backbone link ({head} of residue i to {tail} of residue i+1 in one chain)"
            )
        links.append((a.index, b.index))
    return links


def _check_chains_linked(topology: openmm.app.Topology, links: list[tuple[int, int]], source: str) -> None:
    """Refuse a bond-less topology: its chains would silently fall apart into residues."""
    atoms = list(topology.atoms())
    chains_with_links = {atoms[i].residue.chain.index for i, _ in links}
    for chain in topology.chains():
        if len(list(chain.residues())) > 1 and chain.index not in chains_with_links:
            raise TopologyError(
                f"{source}: chain {chain.id} has no bonds between its residues; gnnmd needs the backbone "
                "links as topology bonds (load the CG PDB with openmm.app.PDBFile, which adds them, or add "
                "CONECT records)"
            )


def cg_topology_from_openmm(
    topology: openmm.app.Topology, name: str = "openmm-topology", source: str = "<openmm Topology>"
) -> CGTopology:
    """The CG topology of an OpenMM topology whose atoms are CG beads (bead i = particle i).

    Masses are those of the atoms the beads sit on (N 14.007, C 12.011, O 15.999 amu),
    as :func:`gnnmd.protein_mapping.map_to_cg` gives them. Bonds within a residue follow
    the mapping; bonds between residues come from the topology's bonds.

    Raises:
        TopologyError: an unknown residue, an atom that is not a bead (an all-atom
            topology), an incomplete residue, a bond that is no backbone link, or
            a multi-residue chain without backbone bonds. The message names the
            source, chain, residue and atom.
    """
    mapping = _mapping_of(topology)
    bead_names, residue_names, residue_ids, chain_ids, intra = [], [], [], [], []
    for residue in topology.residues():
        names = _check_residue(residue, mapping, source)
        index = {n: atom.index for n, atom in zip(names, residue.atoms(), strict=True)}
        intra += [tuple(sorted((index[a], index[b]))) for a, b in map(tuple, INTRA_RESIDUE_BONDS)
                  if a in index and b in index]  # fmt: skip
        for atom, bead in zip(residue.atoms(), names, strict=True):
            if atom.index != len(bead_names):
                raise TopologyError(f"{source}: atoms are not numbered in residue order at atom {atom.index}")
            bead_names.append(bead)
            residue_names.append(canonical_residue_name(residue.name))
            residue_ids.append(_residue_number(residue))
            chain_ids.append(str(residue.chain.id))
    if not bead_names:
        raise TopologyError(f"{source}: the topology has no atoms")
    links = _link_bonds(topology, mapping, source)
    _check_chains_linked(topology, links, source)
    bonds = np.unique(np.sort(np.array(intra + links, dtype=np.int64).reshape(-1, 2), axis=1), axis=0)
    angles, dihedrals = bonded_paths(len(bead_names), bonds)
    return CGTopology(
        name=name,
        mapping=mapping,
        bead_names=tuple(bead_names),
        residue_names=tuple(residue_names),
        residue_ids=np.array(residue_ids, dtype=np.int64),
        chain_ids=tuple(chain_ids),
        bead_types=tuple(f"{r}.{b}" for r, b in zip(residue_names, bead_names, strict=True)),
        masses_amu=np.array([bead_mass_amu(b) for b in bead_names], dtype=np.float64),
        bonds=bonds,
        angles=angles,
        dihedrals=dihedrals,
        atom_indices=np.arange(len(bead_names), dtype=np.int64),
        source=source,
    )


def coarse_grain(
    topology: openmm.app.Topology, positions, mapping: str = "5bead", periodic: bool = False
) -> tuple[openmm.app.Topology, openmm.unit.Quantity]:
    """An all-atom OpenMM topology and positions, mapped to CG beads for a CG gnnmd model.

    The protein residues are kept (waters, ions and ligands are left out, as in
    :func:`gnnmd.protein_mapping.map_to_cg`); each bead sits on its mapped atom. Use the
    result with ``MLPotential("gnnmd", model=...).createSystem(cg_topology)``.

    Args:
        topology: the all-atom topology (e.g. ``PDBFile(...).topology``).
        positions: its positions (a Quantity, or an (n_atoms, 3) array in nm).
        mapping: ``"5bead"`` (N, CA, CB, C, O) or ``"ca"``.
        periodic: keep the topology's periodic box. Off by default: CG models run in
            implicit solvent, and a PDB's CRYST1 box (often the crystal's unit cell)
            is then no simulation box.

    Returns:
        (CG topology, CG positions as a Quantity in nm).
    """
    xyz = positions.value_in_unit(openmm.unit.nanometer) if hasattr(positions, "value_in_unit") else positions
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.shape != (topology.getNumAtoms(), 3):
        atoms = topology.getNumAtoms()
        raise TopologyError(f"positions have shape {xyz.shape}; the topology has {atoms} atoms")
    trajectory = mdtraj.Trajectory(xyz[None], mdtraj.Topology.from_openmm(topology))
    cg, cg_positions = map_to_cg(trajectory, mapping, name="coarse-grained", source="OpenMM topology")
    box = periodic_box_nm(topology) if periodic else None
    return openmm_topology(cg, box), cg_positions[0] * openmm.unit.nanometer


def periodic_box_nm(topology: openmm.app.Topology) -> np.ndarray | None:
    """The topology's (3, 3) box vectors in nm, or None when it is not periodic."""
    box = topology.getPeriodicBoxVectors()
    return None if box is None else np.array([list(v) for v in box.value_in_unit(openmm.unit.nanometer)])
