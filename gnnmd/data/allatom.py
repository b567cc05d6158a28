"""All-atom reference data: OpenMM dynamics of a system, mapped to CG beads as it runs.

**The force map.** Each bead's force is the sum of the forces on its atom and on
the hydrogens bonded to that atom; all other atoms' forces are dropped. Why not
the mapped atom's force alone (a slice map)? The all-atom dynamics constrains
X–H bond lengths, and OpenMM reports force-field forces only, not constraint
forces. A constraint couples a heavy atom to its hydrogens, so the mean force
on the CG coordinate includes whatever acts on those hydrogens. Summing over
the rigid group lets the constraint forces inside it cancel and keeps the
forces on its hydrogens. The slice map would miss them and bias the learned
mean force. Atoms not bonded to a bead atom by a constraint (side-chain atoms
beyond CB) are integrated out and contribute nothing.

Frames are appended to a gnnmd dataset in chunks, each followed by an atomic
checkpoint of the OpenMM state. An interrupted run continues where the last
checkpoint stands, and frames written after it are discarded.
Units: nm, ps, K, kJ/mol/nm.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import h5py
import mdtraj
import numpy as np

from gnnmd.data.dataset import append_frames
from gnnmd.errors import GnnmdError
from gnnmd.systems import System
from gnnmd.topology import CGTopology, map_to_cg

FORCEFIELDS = {"amber14-gbn2": ("amber14-all.xml", "implicit/gbn2.xml")}
PLATFORMS = ("Reference", "CPU", "CUDA")


@dataclass(frozen=True)
class AllAtomSettings:
    """All-atom dynamics: temperature K, step fs, friction 1/ps, one frame every ``frame_interval_ps``."""

    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    frame_interval_ps: float = 1.0
    forcefield: str = "amber14-gbn2"
    platform: str = "CPU"
    chunk_frames: int = 50
    seed: int = 1

    def __post_init__(self) -> None:
        if self.forcefield not in FORCEFIELDS:
            raise ValueError(f"unknown force field {self.forcefield!r}; allowed: {sorted(FORCEFIELDS)}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}; allowed: {PLATFORMS}")
        if self.steps_per_frame < 1:
            raise ValueError(f"frame_interval_ps {self.frame_interval_ps} is shorter than one step")

    @property
    def steps_per_frame(self) -> int:
        return int(round(self.frame_interval_ps * 1000.0 / self.timestep_fs))


def bead_groups(allatom: mdtraj.Topology, cg: CGTopology) -> np.ndarray:
    """(A,) int64: the bead that receives each atom's force, or -1.

    A bead receives the force of its own atom and of every hydrogen bonded to it.
    """
    groups = np.full(allatom.n_atoms, -1, dtype=np.int64)
    groups[cg.atom_indices] = np.arange(cg.n_beads)
    is_bead = groups >= 0
    for a, b in allatom.bonds:
        for heavy, other in ((a, b), (b, a)):
            if is_bead[heavy.index] and other.element is not None and other.element.symbol == "H":
                groups[other.index] = groups[heavy.index]
    return groups


def aggregate_forces(forces: np.ndarray, groups: np.ndarray, n_beads: int) -> np.ndarray:
    """Bead forces (F, n, 3) = Σ of atom forces (F, A, 3) over each bead's group (kJ/mol/nm)."""
    mapped = np.zeros((forces.shape[0], n_beads, 3), dtype=np.float64)
    chosen = groups >= 0
    np.add.at(mapped, (slice(None), groups[chosen]), forces[:, chosen])
    return mapped


def build_allatom(system: System, forcefield, seed: int = 0):
    """The system's protein residues, hydrogens added for ``forcefield``: (openmm Topology, positions nm)."""
    import openmm
    import openmm.app as app
    from openmm import unit

    structure = mdtraj.load(str(system.pdb_path))
    residues = {structure.topology.atom(int(i)).residue.index for i in system.topology.atom_indices}
    keep = [
        a.index for a in structure.topology.atoms if a.residue.index in residues and a.element.symbol != "H"
    ]
    heavy = structure.atom_slice(keep)[0]
    modeller = app.Modeller(heavy.topology.to_openmm(), heavy.openmm_positions(0))
    # addHydrogens starts hydrogens at positions drawn from Python's global `random`:
    # seed it for reproducible runs, and give the caller's random state back afterwards.
    caller_state = random.getstate()
    random.seed(seed)
    try:
        # The Reference platform sums in a fixed order: the relaxed hydrogens are reproducible.
        modeller.addHydrogens(forcefield, platform=openmm.Platform.getPlatformByName("Reference"))
    except ValueError as error:
        raise GnnmdError(f"{system.pdb_path}: cannot add hydrogens for the force field ({error})") from error
    finally:
        random.setstate(caller_state)
    positions = np.array(modeller.getPositions().value_in_unit(unit.nanometer))
    return modeller.getTopology(), positions


class Generator:
    """Runs and records all-atom dynamics of one system into a dataset file.

    Args:
        system: the shipped or PDB system (its CG mapping is used for the beads).
        output: dataset file (.h5); the OpenMM checkpoint is written beside it.
        settings: dynamics and recording settings.
    """

    def __init__(self, system: System, output: str | os.PathLike, settings: AllAtomSettings) -> None:
        import openmm
        import openmm.app as app
        from openmm import unit

        self.output = Path(output)
        self.checkpoint = self.output.with_name(self.output.name + ".openmm.npz")
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
        self.groups = bead_groups(allatom, self.cg)
        omm_system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
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
            self.context.setVelocitiesToTemperature(settings.temperature_k * unit.kelvin, settings.seed)

    def _resume(self) -> int:
        """Frames already recorded; reload the OpenMM state and drop frames written after it."""
        if not self.checkpoint.exists():
            if self.output.exists() and _frames_in(self.output, self.cg.name) > 0:
                raise GnnmdError(
                    f"{self.output} holds {self.cg.name} frames but no checkpoint {self.checkpoint.name}"
                )
            return 0
        with np.load(self.checkpoint) as saved:
            settings = str(saved["settings"])
            if settings != repr(asdict(self.settings)):
                raise GnnmdError(
                    f"{self.checkpoint}: written with settings {settings}; use a new output file"
                )
            frames = int(saved["frames"])
            self.context.loadCheckpoint(saved["state"].tobytes())
        with h5py.File(self.output, "a") as file:
            for label in ("coordinates", "forces"):
                file[f"molecules/{self.cg.name}/{label}"].resize(frames, axis=0)
        return frames

    def record(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Run ``frames`` frame intervals; returns bead positions (F, n, 3) nm and mapped forces (F, n, 3)."""
        from openmm import unit

        positions, forces = [], []
        for _ in range(frames):
            self.integrator.step(self.settings.steps_per_frame)
            state = self.context.getState(getPositions=True, getForces=True)
            positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
            forces.append(
                state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
            )
        atoms = np.asarray(positions)
        return atoms[:, self.cg.atom_indices], aggregate_forces(
            np.asarray(forces), self.groups, self.cg.n_beads
        )

    def run(self, total_frames: int, progress: Callable[[int, int], None] | None = None) -> int:
        """Record until the dataset holds ``total_frames`` frames of this system; returns the count."""
        while self.frames_done < total_frames:
            count = min(self.settings.chunk_frames, total_frames - self.frames_done)
            positions, forces = self.record(count)
            self.frames_done = append_frames(self.output, self.cg, positions, forces)
            self._save_checkpoint()
            if progress is not None:
                progress(self.frames_done, total_frames)
        return self.frames_done

    def _save_checkpoint(self) -> None:
        buffer = io.BytesIO()
        state = np.frombuffer(self.context.createCheckpoint(), dtype=np.uint8)
        np.savez(buffer, state=state, frames=self.frames_done, settings=repr(asdict(self.settings)))
        temporary = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, self.checkpoint)


def _frames_in(path: Path, molecule: str) -> int:
    with h5py.File(path, "r") as file:
        group = file.get(f"molecules/{molecule}")
        return 0 if group is None else int(group["coordinates"].shape[0])
