"""Shipped protein systems and loading of any PDB file as a coarse-grained system.

A shipped system is a PDB file plus a TOML description in the systems folder
(see :func:`systems_dir`). The TOML keys are:

=================  ==========================================================
key                meaning
=================  ==========================================================
name               system name (equals the TOML file's stem)
title              one-line title
pdb                PDB file name, relative to the systems folder
pdb_id             optional Protein Data Bank id
chain / chains     chain id, or list of chain ids, to keep (default: all)
residues           optional ``[first, last]`` PDB residue numbers, inclusive
mapping            CG mapping, ``"5bead"``, ``"ca"`` or ``"backbone"``
model              frame (model) index of the PDB to use, default 0
expected_beads     bead count under ``mapping``; a different count raises
expected_residues  optional residue count, checked under every mapping
aliases            optional other names (case-insensitive), e.g. the PDB id
description        free text
source             ``repo@commit:path`` the PDB file was copied from
=================  ==========================================================

Units: positions in nm, masses in amu (see :mod:`gnnmd.topology`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import mdtraj
import numpy as np

# Re-exported: the catalog (no torch) owns them; gnnmd.systems is where users look for them.
from gnnmd import catalog
from gnnmd.catalog import DEFAULT_SYSTEM, list_systems, read_system_description, systems_dir  # noqa: F401
from gnnmd.errors import SystemNotFoundError, TopologyError
from gnnmd.protein_mapping import CAP_BEADS, STANDARD_RESIDUES, canonical_residue_name, map_to_cg
from gnnmd.topology import MAPPINGS, CGTopology


@dataclass(frozen=True, eq=False)
class System:
    """A CG protein ready to simulate.

    Attributes:
        name: system name (shipped name, or the PDB file's stem).
        topology: the CG topology.
        positions_nm: (n_beads, 3) float64, native structure in nm.
        description: free text.
        pdb_path: the all-atom PDB file it was mapped from (for a PSF topology: the PSF).
        coordinates_path: where the positions came from when not from ``pdb_path`` (a
            trajectory beside a PSF), else None.
    """

    name: str
    topology: CGTopology
    positions_nm: np.ndarray
    description: str
    pdb_path: pathlib.Path
    coordinates_path: pathlib.Path | None = None

    def source_files(self) -> list[pathlib.Path]:
        """The files that define this system (hashed into run records)."""
        return [self.pdb_path] + ([self.coordinates_path] if self.coordinates_path else [])

    def source(self) -> str:
        """The defining files, as one string for records: ``a.pdb`` or ``cg.psf + cg.xtc``."""
        return " + ".join(str(path) for path in self.source_files())

    def source_sha256(self) -> str:
        """SHA-256 of the structure file; of the files' digests in order when there are two."""
        from gnnmd.runfolder import file_sha256

        digests = [file_sha256(path) for path in self.source_files()]
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("".join(digests).encode()).hexdigest()


def _resolve_name(name: str) -> pathlib.Path | None:
    """The TOML file of shipped system ``name`` (also matched by alias or PDB id), or None."""
    folder = catalog.systems_dir()
    wanted = name.strip().lower()
    for stem in list_systems():
        path = folder / f"{stem}.toml"
        if stem.lower() == wanted:
            return path
    for stem in list_systems():
        path = folder / f"{stem}.toml"
        spec = read_system_description(path)
        other = [str(spec["pdb_id"])] if "pdb_id" in spec else []
        other += [str(alias) for alias in spec.get("aliases", [])]
        if wanted in {o.lower() for o in other}:
            return path
    return None


#: File suffixes read as PDBx/mmCIF (through OpenMM's reader); everything else is read as PDB.
CIF_SUFFIXES = (".cif", ".mmcif", ".pdbx")


def _load_cif(path: pathlib.Path) -> mdtraj.Trajectory:
    import openmm.app
    import openmm.unit

    pdbx = openmm.app.PDBxFile(str(path))
    frames = [
        pdbx.getPositions(asNumpy=True, frame=i).value_in_unit(openmm.unit.nanometer)
        for i in range(pdbx.getNumFrames())
    ]
    return mdtraj.Trajectory(np.array(frames), mdtraj.Topology.from_openmm(pdbx.topology))


def _has_atom_records(path: pathlib.Path) -> bool:
    with open(path, "rb") as handle:
        return any(line.startswith((b"ATOM", b"HETATM")) for line in handle)


def _load_pdb(path: pathlib.Path) -> mdtraj.Trajectory:
    """All frames of a PDB (or PDBx/mmCIF) file; any failure is a TopologyError naming the file."""
    kind = "PDBx/mmCIF" if path.suffix.lower() in CIF_SUFFIXES else "PDB"
    if kind == "PDB" and not _has_atom_records(path):
        raise TopologyError(
            f"{path}: not a readable PDB file: no ATOM or HETATM records (PDBx/mmCIF files need one of "
            f"the suffixes {CIF_SUFFIXES})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. mdtraj's dummy-CRYST1 unit cell warning
            traj = _load_cif(path) if kind != "PDB" else mdtraj.load_pdb(str(path))
    except Exception as exc:  # mdtraj and OpenMM raise many types on malformed input
        reason = f"{type(exc).__name__}: {exc}"
        hint = "" if kind != "PDB" else f"; PDBx/mmCIF files need one of the suffixes {CIF_SUFFIXES}"
        raise TopologyError(f"{path}: not a readable {kind} file ({reason}){hint}") from exc
    if traj.n_frames == 0 or traj.n_atoms == 0:
        raise TopologyError(f"{path}: not a readable PDB file: no atoms")
    bad = np.argwhere(~np.isfinite(traj.xyz))
    if len(bad):
        frame, atom, _ = (int(i) for i in bad[0])
        residue = traj.topology.atom(atom).residue
        raise TopologyError(
            f"{path}: model {frame + 1}, atom {atom + 1} ({traj.topology.atom(atom).name} of "
            f"{residue.name}{residue.resSeq}) has a non-finite coordinate {traj.xyz[frame, atom].tolist()}"
        )
    return traj


#: Bonded beads closer than this (nm) mean degenerate coordinates (all zero, or one atom repeated).
MIN_BOND_NM = 0.01


def _check_beads(path: pathlib.Path, topology: CGTopology, positions_nm: np.ndarray) -> None:
    """Refuse coincident bonded beads: no force field can start from them."""
    if not len(topology.bonds):
        return
    bonds = np.asarray(topology.bonds)
    lengths = np.linalg.norm(positions_nm[bonds[:, 0]] - positions_nm[bonds[:, 1]], axis=-1)
    shortest = int(np.argmin(lengths))
    if lengths[shortest] < MIN_BOND_NM:
        i, j = (int(b) for b in bonds[shortest])
        names = [
            f"{topology.bead_names[b]} of {topology.residue_names[b]}{topology.residue_ids[b]}"
            for b in (i, j)
        ]
        raise TopologyError(
            f"{path}: bonded beads {i} ({names[0]}) and {j} ({names[1]}) are {lengths[shortest]:.4f} nm "
            "apart; the structure's coordinates are degenerate (all zero, or atoms repeated)"
        )


def _frame(traj: mdtraj.Trajectory, model: int, path: pathlib.Path) -> mdtraj.Trajectory:
    if not 0 <= model < traj.n_frames:
        raise TopologyError(f"{path}: model {model} requested but the file has {traj.n_frames}")
    return traj[model]


def _chains(spec: dict[str, Any]) -> list[str] | None:
    chains = spec.get("chains", spec.get("chain"))
    if chains is None:
        return None
    return [chains] if isinstance(chains, str) else [str(c) for c in chains]


def _residue_range(spec: dict[str, Any], toml_path: pathlib.Path) -> tuple[int, int] | None:
    residues = spec.get("residues")
    if residues is None:
        return None
    if len(residues) != 2 or residues[0] > residues[1]:
        raise TopologyError(f"{toml_path}: residues must be [first, last], got {residues!r}")
    return int(residues[0]), int(residues[1])


def _check_counts(spec: dict[str, Any], cg: CGTopology, mapping: str, toml: pathlib.Path) -> None:
    """Compare bead and residue counts with the description's expected values."""
    expected = int(spec["expected_beads"])
    if mapping == spec["mapping"] and cg.n_beads != expected:
        got = f"{mapping} mapping gave {cg.n_beads} beads"
        raise TopologyError(f"{toml}: {got}, expected_beads is {expected}")
    n_residues = len(set(zip(cg.chain_ids, cg.residue_ids.tolist(), strict=True)))
    expected = int(spec.get("expected_residues", n_residues))
    if n_residues != expected:
        raise TopologyError(f"{toml}: {n_residues} residues, expected_residues is {expected}")


def _load_shipped(toml_path: pathlib.Path, mapping: str | None) -> System:
    spec = read_system_description(toml_path)
    mapping = mapping or spec["mapping"]
    pdb_path = toml_path.parent / spec["pdb"]
    traj = _frame(_load_pdb(pdb_path), int(spec.get("model", 0)), pdb_path)
    topology, positions = map_to_cg(
        traj,
        mapping,
        name=spec["name"],
        source=str(pdb_path),
        chains=_chains(spec),
        residues=_residue_range(spec, toml_path),
    )
    _check_counts(spec, topology, mapping, toml_path)
    _check_beads(pdb_path, topology, positions[0])
    return System(spec["name"], topology, positions[0], str(spec["description"]).strip(), pdb_path)


class DroppedAtomsWarning(UserWarning):
    """Part of a structure file (non-protein residues, extra models) was not mapped to beads."""


def _report_drops(path: pathlib.Path, traj: mdtraj.Trajectory, mapping: str) -> None:
    """Say once what of a user's structure file is left out, why, and how to keep it if one can."""
    kept = set(STANDARD_RESIDUES) | (set(CAP_BEADS) if mapping == "backbone" else set())
    dropped = Counter(r.name for r in traj.topology.residues if canonical_residue_name(r.name) not in kept)
    parts = []
    if dropped:
        listed = ", ".join(f"{name} x{count}" for name, count in sorted(dropped.items()))
        caps = " (the backbone mapping keeps ACE/NME caps)" if set(dropped) & set(CAP_BEADS) else ""
        parts.append(
            f"{sum(dropped.values())} non-protein residue(s) ({listed}): gnnmd maps protein only{caps}"
        )
    if traj.n_frames > 1:
        parts.append(
            f"models 2-{traj.n_frames}: the first model is used (a system TOML's `model` key picks another)"
        )
    if parts:
        warnings.warn(f"{path}: left out " + "; ".join(parts), DroppedAtomsWarning, stacklevel=4)


def _load_path(pdb_path: pathlib.Path, mapping: str) -> System:
    everything = _load_pdb(pdb_path)
    _report_drops(pdb_path, everything, mapping)
    traj = _frame(everything, 0, pdb_path)
    topology, positions = map_to_cg(traj, mapping, name=pdb_path.stem, source=str(pdb_path))
    _check_beads(pdb_path, topology, positions[0])
    description = f"{pdb_path.name}: all protein chains, model 1, {mapping} mapping"
    return System(pdb_path.stem, topology, positions[0], description, pdb_path)


def load_system(name_or_path: str | os.PathLike[str], mapping: str | None = None) -> System:
    """Load a shipped system by name, or any PDB file by path, as a CG system.

    Args:
        name_or_path: a shipped system name (see :func:`list_systems`; aliases and
            PDB ids such as ``"1ENH"`` also work, case-insensitive), or the path of
            a PDB file (all protein chains, first model), or of a system TOML file.
        mapping: ``"5bead"`` or ``"ca"``; default: the system's own (``"5bead"`` for
            files).

    Returns:
        The :class:`System`; ``positions_nm`` is (n_beads, 3) float64 in nm.

    Raises:
        SystemNotFoundError: neither a shipped name nor an existing file.
        TopologyError: the PDB cannot be read or mapped, or a shipped system's bead
            count differs from its ``expected_beads``.
    """
    if mapping is not None and mapping not in MAPPINGS:
        raise ValueError(f"unknown CG mapping {mapping!r}; allowed: {list(MAPPINGS)}")
    toml_path = _resolve_name(str(name_or_path)) if isinstance(name_or_path, str) else None
    if toml_path is not None:
        return _load_shipped(toml_path, mapping)
    path = pathlib.Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".toml":
        return _load_shipped(path, mapping)
    if path.is_file():
        return _load_path(path, mapping or "5bead")
    raise SystemNotFoundError(
        f"{str(name_or_path)!r} is neither a shipped system nor an existing PDB file; "
        f"shipped systems: {', '.join(list_systems())} (in {catalog.systems_dir()})"
    )
