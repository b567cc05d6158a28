"""Forces for all-atom trajectories that have none: recomputed frame by frame, mapped to CG beads.

A trajectory (any format mdtraj reads: DCD, XTC, ...) and its topology file (PDB)
give the positions. An OpenMM System gives the forces at those positions. The
System is built from a named force field (the table of the all-atom generator,
:data:`gnnmd.data.allatom.FORCEFIELDS`), or read from a serialized System XML for
topologies whose residues the force field's templates cannot match. Coordinates
and forces are mapped to beads with the generator's force maps
(:func:`gnnmd.data.force_map.bead_groups`): ``groups`` (default; a bead's force sums
every atom nearest to its atom along bonds, the least noisy) or ``hydrogens`` (its
atom and the hydrogens bonded to it: what datasets recorded before the choice existed).

The recomputed forces belong to the recomputing Hamiltonian, evaluated at
positions that the trajectory's own Hamiltonian sampled. Force matching learns the
mean force of the first only if the two agree (same force field, same solvent).

Frames are appended to a gnnmd dataset in chunks. The molecule's ``recompute``
attribute (JSON) records the Hamiltonian and, per trajectory, how many frames are
done. An interrupted import continues where the record stands (frames written past
it are dropped), a finished one is not imported twice, and another trajectory with
the same Hamiltonian is appended to the same molecule.
Units: positions nm (mdtraj converts on reading), forces kJ/mol/nm.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mdtraj
import numpy as np

from gnnmd.data.allatom import FORCEFIELDS, PLATFORMS
from gnnmd.data.dataset import append_frames
from gnnmd.data.force_map import FORCE_MAPS, aggregate_forces, bead_groups
from gnnmd.data.import_log import ImportLog, fingerprint
from gnnmd.errors import ForceFieldError, OpenMMSetupError, TrajectoryError
from gnnmd.protein_mapping import map_to_cg
from gnnmd.topology import MAPPINGS


@dataclass(frozen=True)
class RecomputeSettings:
    """Where forces come from, and how frames are read.

    Attributes:
        forcefield: a name of :data:`~gnnmd.data.allatom.FORCEFIELDS` (no cutoff, implicit solvent).
        system_xml: a serialized OpenMM System for the topology's atoms; replaces ``forcefield``.
        ignore_external_bonds: match templates ignoring bonds to atoms missing from the topology
            (OpenMM's option): residues next to stripped caps get internal-residue parameters.
        platform: OpenMM platform.
        stride: keep every ``stride``-th frame of the trajectory.
        chunk_frames: frames evaluated and written per chunk.
        mapping: CG mapping (``"5bead"`` or ``"ca"``).
        force_map: ``"groups"`` or ``"hydrogens"`` (see the module docstring).
    """

    forcefield: str = "amber14-gbn2"
    system_xml: Path | None = None
    ignore_external_bonds: bool = False
    platform: str = "CPU"
    stride: int = 1
    chunk_frames: int = 100
    mapping: str = "5bead"
    force_map: str = "groups"

    def __post_init__(self) -> None:
        if self.forcefield not in FORCEFIELDS:
            raise ValueError(f"unknown force field {self.forcefield!r}; allowed: {sorted(FORCEFIELDS)}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}; allowed: {PLATFORMS}")
        if self.mapping not in MAPPINGS:
            raise ValueError(f"unknown mapping {self.mapping!r}; allowed: {MAPPINGS}")
        if self.force_map not in FORCE_MAPS:
            raise ValueError(f"unknown force map {self.force_map!r}; allowed: {FORCE_MAPS}")
        if self.stride < 1 or self.chunk_frames < 1:
            raise ValueError(f"stride ({self.stride}) and chunk_frames ({self.chunk_frames}) must be >= 1")
        if self.system_xml is not None and self.ignore_external_bonds:
            raise ValueError("ignore_external_bonds applies to force-field templates, not to a System XML")

    def hamiltonian(self) -> dict:
        """What decides the forces; all frames of one molecule must share it. The hydrogens map is
        left out: records from before the choice have no field and used it."""
        if self.system_xml is not None:
            digest = hashlib.sha256(Path(self.system_xml).read_bytes()).hexdigest()
            record = {"system_xml": Path(self.system_xml).name, "sha256": digest, "mapping": self.mapping}
        else:
            record = {
                "forcefield": self.forcefield,
                "ignore_external_bonds": self.ignore_external_bonds,
                "mapping": self.mapping,
            }
        return record if self.force_map == "hydrogens" else {**record, "force_map": self.force_map}


def load_structure(path: str | os.PathLike) -> mdtraj.Trajectory:
    """The first frame of a topology file (PDB), positions in nm; errors name the file."""
    try:
        return mdtraj.load_frame(str(path), 0)
    except Exception as error:  # mdtraj raises many types on missing or malformed files
        raise TrajectoryError(
            f"{path}: cannot read the topology ({type(error).__name__}: {error})"
        ) from error


def _residue_named(message: str, topology) -> str:
    """'RES resSeq (chain X)' of the residue OpenMM's message names by index, or ''."""
    found = re.search(r"residue (\d+) \(", message)
    if found is None or int(found.group(1)) >= topology.getNumResidues():
        return ""
    residue = list(topology.residues())[int(found.group(1))]
    return f" residue {residue.name} {residue.id} (chain {residue.chain.id})"


@functools.cache
def _forcefield(name: str):
    """The force field of :data:`FORCEFIELDS` ``name``; parsing its XML takes a second, so once."""
    import openmm.app as app

    return app.ForceField(*FORCEFIELDS[name])


def build_system(structure: mdtraj.Trajectory, source: str, settings: RecomputeSettings):
    """The OpenMM System of the structure's atoms: from ``settings.system_xml`` or the force field.

    Raises:
        ForceFieldError: a residue matches no template (the message names it and suggests
            a System XML), or the XML does not hold a System of this many particles.
    """
    import openmm.app as app

    if settings.system_xml is not None:
        return read_system_xml(settings.system_xml, structure.n_atoms, source)
    forcefield = _forcefield(settings.forcefield)
    topology = structure.topology.to_openmm()
    try:
        # Forces do not depend on constraints: none are added.
        return forcefield.createSystem(
            topology, nonbondedMethod=app.NoCutoff, constraints=None,
            ignoreExternalBonds=settings.ignore_external_bonds,
        )  # fmt: skip
    except Exception as error:  # ValueError for no template, plain Exception for ambiguous ones
        message = str(error).split("  For more information")[0]
        hint = "build the System yourself, save it with openmm.XmlSerializer and pass --system-xml"
        if "terminal" in message and not settings.ignore_external_bonds:
            hint += "; if the chain's caps were stripped, --ignore-external-bonds gives the end residues "
            hint += "internal-residue parameters"
        raise ForceFieldError(
            f"{source}: force field {settings.forcefield} cannot parametrize"
            f"{_residue_named(message, topology)}: {message} ({hint})"
        ) from error


def read_system_xml(path: str | os.PathLike, n_atoms: int, source: str):
    """A serialized OpenMM System with ``n_atoms`` particles (those of the topology ``source``)."""
    import openmm

    try:
        system = openmm.XmlSerializer.deserialize(Path(path).read_text())
    except Exception as error:
        raise ForceFieldError(f"{path}: not a serialized OpenMM System ({error})") from error
    if not isinstance(system, openmm.System):
        raise ForceFieldError(f"{path}: holds a {type(system).__name__}, not an OpenMM System")
    if system.getNumParticles() != n_atoms:
        raise ForceFieldError(
            f"{path}: the System has {system.getNumParticles()} particles but {source} has {n_atoms} atoms"
        )
    return system


def openmm_platform(name: str):
    """The OpenMM platform ``name``; a clear error lists the available ones."""
    import openmm

    try:
        return openmm.Platform.getPlatformByName(name)
    except Exception as error:
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise OpenMMSetupError(
            f"OpenMM platform {name!r} is not available here (available: {names})"
        ) from error


class ForceRecomputer:
    """Forces of one all-atom topology under one System, and their CG map.

    Args:
        topology: topology file (PDB) in the trajectory's atom order.
        settings: where forces come from.
        name: molecule name of the CG topology (default: the topology file's stem).
    """

    def __init__(
        self, topology: str | os.PathLike, settings: RecomputeSettings, name: str | None = None
    ) -> None:
        import openmm

        self.topology_path = Path(topology)
        self.settings = settings
        structure = load_structure(self.topology_path)
        self.topology = structure.topology
        self.cg, _ = map_to_cg(structure, settings.mapping, name or self.topology_path.stem, str(topology))
        self.groups = bead_groups(self.topology, self.cg, settings.force_map)
        system = build_system(structure, str(topology), settings)
        self.periodic = system.usesPeriodicBoundaryConditions()
        # The integrator is never stepped: the Context only evaluates forces.
        self.context = openmm.Context(
            system, openmm.VerletIntegrator(0.001), openmm_platform(settings.platform)
        )

    def atom_forces(self, positions_nm: np.ndarray, box_vectors_nm: np.ndarray | None = None) -> np.ndarray:
        """Force-field forces (F, A, 3) kJ/mol/nm at positions (F, A, 3) nm (box (F, 3, 3) nm if periodic)."""
        from openmm import unit

        if self.periodic and box_vectors_nm is None:
            raise TrajectoryError(
                f"the System of {self.topology_path} is periodic but the frames have no box"
            )
        forces = np.empty(np.shape(positions_nm), dtype=np.float64)
        for i, positions in enumerate(positions_nm):
            if self.periodic:
                self.context.setPeriodicBoxVectors(*box_vectors_nm[i])
            self.context.setPositions(positions)
            state = self.context.getState(getForces=True)
            forces[i] = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        return forces

    def map(self, positions_nm: np.ndarray, forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bead positions (F, n, 3) nm and mapped forces (F, n, 3) kJ/mol/nm of atomic ones (F, A, 3)."""
        return np.asarray(positions_nm)[:, self.cg.atom_indices], aggregate_forces(
            forces, self.groups, self.cg.n_beads
        )


def recompute(
    trajectory: str | os.PathLike,
    topology: str | os.PathLike,
    output: str | os.PathLike,
    settings: RecomputeSettings,
    name: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[str, int]:
    """Recompute and map the forces of every ``stride``-th frame of ``trajectory`` into ``output``.

    Args:
        trajectory: all-atom trajectory (positions; nm after mdtraj's reading).
        topology: its topology file (PDB), same atoms in the same order.
        output: dataset file (.h5), created or extended; an interrupted import resumes.
        settings: where forces come from, stride, chunk size, mapping.
        name: molecule name (default: the topology file's stem).
        progress: called with (frames done, frames in all or None) at the start and after each chunk.

    Returns:
        The molecule name and the number of this trajectory's frames in the dataset.

    Raises:
        TrajectoryError: unreadable trajectory, atom counts that differ from the topology's,
            non-finite positions or forces (the message names the frame index).
        ForceFieldError: the force field cannot parametrize the topology, or a bad System XML.
        DatasetError: the molecule in ``output`` holds other data (never overwritten).
    """
    trajectory = Path(trajectory)
    recomputer = ForceRecomputer(topology, settings, name)
    if not trajectory.is_file():
        raise TrajectoryError(f"{trajectory}: no such trajectory file")
    hamiltonian = settings.hamiltonian()
    description = f"all-atom frames of {trajectory.name}, forces recomputed with {hamiltonian}"
    log = ImportLog(Path(output), recomputer.cg.name, hamiltonian, description)
    record = log.start({"trajectory": str(trajectory), "fingerprint": fingerprint(trajectory),
                        "stride": settings.stride})  # fmt: skip
    if not record["complete"]:
        with _open(trajectory) as file:
            record = _import(file, trajectory, recomputer, log, record, progress)
        if record["frames"] == 0:
            raise TrajectoryError(f"{trajectory}: holds no frames")
        log.write(dict(record, complete=True))
    return recomputer.cg.name, record["frames"]


def _open(trajectory: Path):
    try:
        return mdtraj.open(str(trajectory))
    except Exception as error:  # unknown extension, unreadable or malformed file
        raise TrajectoryError(f"{trajectory}: cannot read the trajectory ({error})") from error


def _import(
    file, trajectory: Path, recomputer: ForceRecomputer, log: ImportLog, record: dict, progress
) -> dict:
    """Evaluate, map and append frames from where ``record`` stands; logs each chunk; returns the record."""
    stride = recomputer.settings.stride
    total = _count_frames(file, stride)
    file.seek(record["frames"] * stride)
    while True:
        if progress is not None:
            progress(record["frames"], total)
        chunk = _read_chunk(file, recomputer, recomputer.settings.chunk_frames * stride, trajectory)
        if chunk.n_frames == 0:
            return record
        # A chunk holds a multiple of `stride` frames, so each one starts on a kept frame.
        chunk = chunk[::stride]
        positions, forces = _evaluate(recomputer, chunk, trajectory, record["frames"] * stride, stride)
        append_frames(log.output, recomputer.cg, *recomputer.map(positions, forces))
        record = dict(record, frames=record["frames"] + chunk.n_frames)
        log.write(record)


def _count_frames(file, stride: int) -> int | None:
    """Frames kept at ``stride``, or None where the format does not know its length."""
    try:
        return -(-len(file) // stride)
    except Exception:  # not every mdtraj format implements len()
        return None


def _read_chunk(file, recomputer: ForceRecomputer, frames: int, trajectory: Path) -> mdtraj.Trajectory:
    try:
        return file.read_as_traj(recomputer.topology, n_frames=frames)
    except ValueError as error:
        # mdtraj: "xyz must be shape (Any, A, 3). You supplied (F, B, 3)"
        shape = re.search(r"supplied\s+\(\d+, (\d+), 3\)", str(error))
        if shape is None:
            raise TrajectoryError(f"{trajectory}: cannot read frames ({error})") from error
        raise TrajectoryError(
            f"{trajectory}: frames have {shape.group(1)} atoms but the topology "
            f"{recomputer.topology_path} has {recomputer.topology.n_atoms}"
        ) from error


def _evaluate(
    recomputer: ForceRecomputer, chunk: mdtraj.Trajectory, trajectory: Path, start: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (F, A, 3) nm and forces (F, A, 3) kJ/mol/nm of a chunk; refuses non-finite frames."""
    positions = np.asarray(chunk.xyz, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=(1, 2)))
    if bad.size:
        raise TrajectoryError(f"{trajectory}: frame {start + bad[0] * stride} has non-finite positions")
    forces = recomputer.atom_forces(positions, chunk.unitcell_vectors)
    bad = np.flatnonzero(~np.isfinite(forces).all(axis=(1, 2)))
    if bad.size:
        raise TrajectoryError(
            f"{trajectory}: frame {start + bad[0] * stride}: the force field gives non-finite forces "
            "(overlapping atoms?)"
        )
    return positions, forces
