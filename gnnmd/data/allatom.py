"""All-atom reference data: OpenMM dynamics of a system, recorded as it runs.

Two resolutions (:attr:`AllAtomSettings.resolution`):

- ``"cg"`` (default): the frames are mapped to the system's CG beads (positions
  of the bead atoms, forces by the force map, :mod:`gnnmd.data.force_map`), X–H bonds constrained, 2 fs
  steps. No energies are recorded: the all-atom potential energy is not an
  energy of the CG coordinates (the CG potential is a free energy, a mean over
  the atoms integrated out).
- ``"atom"``: every atom, hydrogens included, with element-symbol types and no
  bonds (molecule ``<system>_allatom``, see :func:`allatom_topology`), its
  force-field forces unmapped and each frame's potential energy (kJ/mol). No
  constraints (an all-atom potential must learn X–H stretching, which
  constrained dynamics never samples) and 1 fs steps by default.

Frames (and, at atom resolution, energies) are appended to a gnnmd dataset in
chunks, each followed by an atomic checkpoint of the OpenMM state. An
interrupted run continues where the last checkpoint stands, and frames written
after it are discarded. Both resolutions of a system can share one file.
Units: nm, ps, fs (time step), K, kJ/mol, kJ/mol/nm.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import h5py
import mdtraj
import numpy as np

from gnnmd.data.allatom_structure import allatom_topology, build_allatom
from gnnmd.data.dataset import append_frames
from gnnmd.data.force_map import FORCE_MAPS, aggregate_forces, bead_groups
from gnnmd.errors import GnnmdError
from gnnmd.protein_mapping import map_to_cg
from gnnmd.systems import System

FORCEFIELDS = {"amber14-gbn2": ("amber14-all.xml", "implicit/gbn2.xml")}
PLATFORMS = ("Reference", "CPU", "CUDA")
#: What is recorded: CG beads with mapped forces, or every atom with forces and energies.
RESOLUTIONS = ("cg", "atom")
#: Bond constraints of the dynamics per resolution. The CG force map relies on rigid
#: X–H groups; all-atom data must sample X–H stretching, so nothing is constrained.
CONSTRAINTS = {"cg": "hbonds", "atom": "none"}
#: Default time step (fs) per resolution: unconstrained X–H bonds need a shorter one.
DEFAULT_TIMESTEP_FS = {"cg": 2.0, "atom": 1.0}
#: Appended to the system name to name the molecule recorded at atom resolution.
ALLATOM_SUFFIX = "_allatom"


@dataclass(frozen=True)
class AllAtomSettings:
    """All-atom dynamics: temperature K, step fs, friction 1/ps, one frame every ``frame_interval_ps``.

    ``resolution`` is ``"cg"`` or ``"atom"`` (see the module docstring). ``timestep_fs``
    and ``constraints`` default to the resolution's (:data:`DEFAULT_TIMESTEP_FS`,
    :data:`CONSTRAINTS`) and are filled in on construction; other constraints than the
    resolution's are refused.
    """

    temperature_k: float = 300.0
    timestep_fs: float | None = None
    friction_per_ps: float = 1.0
    frame_interval_ps: float = 1.0
    forcefield: str = "amber14-gbn2"
    platform: str = "CPU"
    chunk_frames: int = 50
    seed: int = 1
    # Added last; fingerprint() leaves them out for cg, as checkpoints written before
    # they existed lack them.
    resolution: str = "cg"
    constraints: str | None = None
    #: A fresh run first spends ``start_ps`` at this temperature (K), from its own velocities, so
    #: runs with different seeds start from different conformations; None: start at the structure.
    start_temperature_k: float | None = None
    start_ps: float = 0.0
    #: One of :data:`FORCE_MAPS` (cg resolution; atom resolution records every atom's force).
    force_map: str = "groups"

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {self.resolution!r}; allowed: {RESOLUTIONS}")
        required = CONSTRAINTS[self.resolution]
        if self.constraints is None:
            object.__setattr__(self, "constraints", required)
        elif self.constraints != required:
            raise ValueError(
                f"constraints {self.constraints!r} do not fit resolution {self.resolution!r}, which needs "
                f"{required!r}: the CG force map sums over rigid X-H groups, and all-atom data must "
                "sample X-H stretching"
            )
        if self.force_map not in FORCE_MAPS:
            raise ValueError(f"unknown force_map {self.force_map!r}; allowed: {FORCE_MAPS}")
        if self.timestep_fs is None:
            object.__setattr__(self, "timestep_fs", DEFAULT_TIMESTEP_FS[self.resolution])
        if not self.timestep_fs > 0:
            raise ValueError(f"timestep_fs must be positive, got {self.timestep_fs}")
        if self.forcefield not in FORCEFIELDS:
            raise ValueError(f"unknown force field {self.forcefield!r}; allowed: {sorted(FORCEFIELDS)}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}; allowed: {PLATFORMS}")
        if self.steps_per_frame < 1:
            raise ValueError(f"frame_interval_ps {self.frame_interval_ps} is shorter than one step")
        hot = self.start_temperature_k
        valid = self.start_ps == 0.0 if hot is None else (hot > 0 and self.start_ps > 0)
        if not valid:
            raise ValueError(
                f"start_temperature_k ({hot}) and start_ps ({self.start_ps}): give both, positive, or neither"
            )

    @property
    def steps_per_frame(self) -> int:
        return int(round(self.frame_interval_ps * 1000.0 / self.timestep_fs))

    def fingerprint(self) -> str:
        """The settings as a checkpoint records them; a resume requires an equal one.

        For ``cg`` the resolution and constraints are left out, so the fingerprint is
        that of the settings before those fields existed and older checkpoints resume;
        the force map is left out where it is the one they used (``"hydrogens"``) or where
        it plays no part (atom resolution).
        """
        fields = asdict(self)
        if self.force_map == "hydrogens" or self.resolution == "atom":
            del fields["force_map"]
        if self.resolution == "cg":
            del fields["resolution"], fields["constraints"]
        if self.start_temperature_k is None:  # added later: absent from older checkpoints
            del fields["start_temperature_k"], fields["start_ps"]
        return repr(fields)


def resolve_platform(name: str) -> str:
    """An OpenMM platform name; ``"auto"`` is CUDA when OpenMM can load it here, else CPU."""
    if name != "auto":
        return name
    import openmm

    try:
        openmm.Platform.getPlatformByName("CUDA")
    except Exception:  # OpenMM raises a bare Exception for a platform it cannot load
        return "CPU"
    return "CUDA"


class Generator:
    """Runs and records all-atom dynamics of one system into a dataset file.

    Args:
        system: the shipped or PDB system (its CG mapping is used for the beads).
        output: dataset file (.h5); the OpenMM checkpoint is written beside it
            (``<output>.openmm.npz`` for cg, ``<output>.atom.openmm.npz`` for atom).
        settings: dynamics and recording settings.

    Attributes:
        molecule: the topology recorded: :attr:`cg` at cg resolution, every atom
            (molecule ``<system>_allatom``) at atom resolution.
        cg: the system's CG beads; groups: each atom's bead (:func:`bead_groups`).
    """

    def __init__(self, system: System, output: str | os.PathLike, settings: AllAtomSettings) -> None:
        import openmm
        import openmm.app as app
        from openmm import unit

        self.output = Path(output)
        suffix = ".openmm.npz" if settings.resolution == "cg" else f".{settings.resolution}.openmm.npz"
        self.checkpoint = self.output.with_name(self.output.name + suffix)
        self.settings = settings
        forcefield = app.ForceField(*FORCEFIELDS[settings.forcefield])
        topology, positions = build_allatom(system, forcefield, settings.seed)
        self.topology = topology  # the all-atom OpenMM topology, hydrogens included
        allatom = mdtraj.Topology.from_openmm(topology)
        self.cg, _ = map_to_cg(
            mdtraj.Trajectory(positions[None], allatom),
            system.topology.mapping,
            system.name,
            str(system.pdb_path),
        )
        self.groups = bead_groups(allatom, self.cg, settings.force_map)
        constraints = {"hbonds": app.HBonds, "none": None}[settings.constraints]
        omm_system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=constraints)
        if settings.resolution == "atom":
            masses = [omm_system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(len(positions))]
            name = system.name + ALLATOM_SUFFIX
            self.molecule = allatom_topology(name, topology, np.asarray(masses), str(system.pdb_path))
        else:
            self.molecule = self.cg
        integrator = openmm.LangevinMiddleIntegrator(
            settings.temperature_k * unit.kelvin,
            settings.friction_per_ps / unit.picosecond,
            settings.timestep_fs * unit.femtosecond,
        )
        integrator.setRandomNumberSeed(settings.seed)
        platform = openmm.Platform.getPlatformByName(settings.platform)
        self.context = openmm.Context(omm_system, integrator, platform)
        self.integrator = integrator
        self.context.setPositions(positions)
        self.frames_done = self._resume()
        if self.frames_done == 0 and not self.checkpoint.exists():
            openmm.LocalEnergyMinimizer.minimize(self.context)
            self._hot_start()
            self.context.setVelocitiesToTemperature(settings.temperature_k * unit.kelvin, settings.seed)

    def _hot_start(self) -> None:
        """Spend ``start_ps`` at ``start_temperature_k`` (nothing recorded): a seed-dependent start."""
        from openmm import unit

        hot = self.settings.start_temperature_k
        if hot is None:
            return
        self.integrator.setTemperature(hot * unit.kelvin)
        self.context.setVelocitiesToTemperature(hot * unit.kelvin, self.settings.seed)
        self.integrator.step(int(round(self.settings.start_ps * 1000.0 / self.settings.timestep_fs)))
        self.integrator.setTemperature(self.settings.temperature_k * unit.kelvin)

    def _resume(self) -> int:
        """Frames already recorded; reload the OpenMM state and drop frames written after it."""
        name = self.molecule.name
        if not self.checkpoint.exists():
            if self.output.exists() and _frames_in(self.output, name) > 0:
                raise GnnmdError(
                    f"{self.output} holds {name} frames but no checkpoint {self.checkpoint.name}"
                )
            return 0
        try:  # allow_pickle=False: a tampered checkpoint cannot run code
            with np.load(self.checkpoint, allow_pickle=False) as saved:
                settings, frames, state = str(saved["settings"]), int(saved["frames"]), saved["state"]
        except (OSError, ValueError, KeyError) as error:
            raise GnnmdError(f"{self.checkpoint}: not a readable generator checkpoint ({error})") from None
        if settings != self.settings.fingerprint():
            raise GnnmdError(f"{self.checkpoint}: written with settings {settings}; use a new output file")
        self.context.loadCheckpoint(state.tobytes())
        with h5py.File(self.output, "a") as file:
            group = file[f"molecules/{name}"]
            for label in ("coordinates", "forces", "energies"):
                if label in group:
                    group[label].resize(frames, axis=0)
        return frames

    def record(self, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Run ``frames`` frame intervals; returns positions, forces and energies of :attr:`molecule`.

        cg: bead positions (F, n, 3) nm, mapped forces (F, n, 3) kJ/mol/nm, energies None
        (the all-atom energy is no CG energy). atom: positions (F, A, 3) nm, forces
        (F, A, 3) kJ/mol/nm of every atom, potential energies (F,) kJ/mol.
        """
        from openmm import unit

        atom = self.settings.resolution == "atom"
        positions, forces, energies = [], [], []
        for _ in range(frames):
            self.integrator.step(self.settings.steps_per_frame)
            state = self.context.getState(getPositions=True, getForces=True, getEnergy=atom)
            positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
            forces.append(
                state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
            )
            if atom:
                energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        atoms = np.asarray(positions)
        if atom:
            return atoms, np.asarray(forces), np.asarray(energies, dtype=np.float64)
        mapped = aggregate_forces(np.asarray(forces), self.groups, self.cg.n_beads)
        return atoms[:, self.cg.atom_indices], mapped, None

    def run(self, total_frames: int, progress: Callable[[int, int], None] | None = None) -> int:
        """Record until the dataset holds ``total_frames`` frames of :attr:`molecule`; returns the count."""
        while self.frames_done < total_frames:
            count = min(self.settings.chunk_frames, total_frames - self.frames_done)
            positions, forces, energies = self.record(count)
            self.frames_done = append_frames(self.output, self.molecule, positions, forces, energies)
            self._save_checkpoint()
            if progress is not None:
                progress(self.frames_done, total_frames)
        return self.frames_done

    def _save_checkpoint(self) -> None:
        buffer = io.BytesIO()
        state = np.frombuffer(self.context.createCheckpoint(), dtype=np.uint8)
        np.savez(buffer, state=state, frames=self.frames_done, settings=self.settings.fingerprint())
        temporary = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, self.checkpoint)


def _frames_in(path: Path, molecule: str) -> int:
    with h5py.File(path, "r") as file:
        group = file.get(f"molecules/{molecule}")
        return 0 if group is None else int(group["coordinates"].shape[0])
