"""``gnnmd data qm``: quantum-chemistry energies and forces for every frame of a source, resumable
and parallel, merged into a gnnmd dataset.

Frames come from a gnnmd all-atom dataset (element bead types; every molecule of it, or the
one ``--molecule`` names) or any file ASE reads. Frames are numbered across molecules, in the
dataset's order. Each labelled frame is written on its own, atomically, into a work folder beside the output
(``OUT.h5.qm/frame-000123.npz``: energy, forces, convergence, SCF cycles, wall time), so a
run killed at any moment loses at most the frames in flight. Workers are ``--processes P`` on
one machine or the ranks of ``torchrun``; frame ``i`` belongs to worker ``i mod P``; a worker
skips frames already done, so a resumed run, with any number of processes, finishes the same
set of frames and the results do not depend on ``P``. When every
frame is done the frames are merged in order into ``OUT.h5``: converged frames as labels
(coordinates, forces, energies), every frame's convergence, cycles and wall time in the QM
record (attribute ``qm`` of the molecule). The work folder records the settings and the
source's SHA-256; a resume that differs in either is refused.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from gnnmd.data.qm import QMInputError, QMSettings, check_frame, engine_for
from gnnmd.distributed import finalize, gather_to_root, initialize, on_root, rank_from_environment
from gnnmd.runfolder import RunFolderLock, atomic_write_bytes, claim, file_sha256
from gnnmd.topology import custom_topology

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Frames:
    """The frames to label: (F, n) atomic numbers per atom (one molecule), (F, n, 3) nm."""

    name: str
    numbers: np.ndarray
    positions_nm: np.ndarray
    source_indices: np.ndarray


def read_frames(
    path: Path, every: int = 1, molecule: str | None = None, topology: Path | None = None
) -> list[Frames]:
    """Every ``every``-th frame of each molecule of a gnnmd dataset (or of the one ``molecule``
    names), of a trajectory with its ``topology`` (any format mdtraj reads), or of a file ASE reads."""
    if every < 1:
        raise QMInputError(f"--every must be at least 1, got {every}")
    if topology is not None:
        return [_trajectory_frames(path, topology, every)]
    if h5py.is_hdf5(path):
        return _dataset_frames(path, every, molecule)
    import ase.io

    try:
        images = ase.io.read(str(path), index=f"::{every}")
    except Exception as error:  # ASE raises many types for unknown or damaged files
        raise QMInputError(f"{path}: not a gnnmd dataset nor a file ASE reads ({error})") from None
    numbers = images[0].numbers
    for k, atoms in enumerate(images):
        if not np.array_equal(atoms.numbers, numbers):
            raise QMInputError(f"{path}: frame {k * every} has other atoms than frame 0")
    positions = np.stack([atoms.positions for atoms in images]) * 0.1
    indices = np.arange(len(images)) * every
    return [Frames(path.stem, numbers, positions, indices)]


def _trajectory_frames(path: Path, topology: Path, every: int) -> Frames:
    import mdtraj

    try:
        trajectory = mdtraj.load(str(path), top=str(topology), stride=every)
    except Exception as error:  # mdtraj raises many types for unreadable or mismatched files
        raise QMInputError(f"{path}: not readable with topology {topology} ({error})") from None
    numbers = np.array([atom.element.number for atom in trajectory.topology.atoms])
    indices = np.arange(trajectory.n_frames) * every
    return Frames(path.stem, numbers, np.asarray(trajectory.xyz, dtype=np.float64), indices)


def _dataset_frames(path: Path, every: int, molecule: str | None) -> list[Frames]:
    from ase.data import atomic_numbers

    from gnnmd.data.dataset import ForceDataset

    dataset = ForceDataset(path, [molecule] if molecule else None)
    molecules = []
    for index, topology in enumerate(dataset.topologies):
        unknown = sorted({t for t in topology.bead_types if t not in atomic_numbers})
        if unknown:
            raise QMInputError(
                f"{path}: molecule {topology.name!r} has bead types {unknown}, not elements; QM labels "
                "need all-atom data"
            )
        count = int(dataset.offsets[index + 1] - dataset.offsets[index])
        indices = np.arange(0, count, every)
        coordinates, _ = dataset.frames(index, indices)
        numbers = np.array([atomic_numbers[t] for t in topology.bead_types])
        molecules.append(Frames(topology.name, numbers, np.asarray(coordinates, dtype=np.float64), indices))
    return molecules


def _offsets(molecules: list[Frames]) -> np.ndarray:
    """(M + 1,) where each molecule's frames start in the numbering across molecules."""
    return np.concatenate([[0], np.cumsum([len(m.source_indices) for m in molecules])]).astype(np.int64)


def _locate(molecules: list[Frames], offsets: np.ndarray, frame: int) -> tuple[Frames, int]:
    """The molecule of frame ``frame`` (numbered across molecules) and the frame's index in it."""
    m = int(np.searchsorted(offsets, frame, side="right")) - 1
    return molecules[m], frame - int(offsets[m])


def label(
    source: Path,
    output: Path,
    settings: QMSettings,
    every: int = 1,
    processes: int = 1,
    molecule: str | None = None,
    topology: Path | None = None,
) -> dict:
    """Label every selected frame (resuming what a previous run did) and write ``output``.

    Returns a summary: frames, converged, newly computed, seconds per label.
    """
    molecules = read_frames(source, every, molecule, topology)
    for frames in molecules:
        where = f"{source} molecule {frames.name!r}" if len(molecules) > 1 else str(source)
        for k, index in enumerate(frames.source_indices):
            check_frame(frames.numbers, frames.positions_nm[k], settings, f"{where} frame {index}")
    total = int(_offsets(molecules)[-1])
    work = Path(str(output) + ".qm")
    info = rank_from_environment()
    if info.distributed and processes > 1:
        raise QMInputError("under torchrun each rank is one labelling process; leave --processes at 1")
    initialize("cpu", info)
    lock = RunFolderLock(work)

    def start() -> int:
        claim(lock)  # rank 0 owns the folder; other ranks only add frame files to it
        _check_manifest(work, source, settings, every, molecule, topology)
        return len(_done(work))

    try:
        before = on_root(start, info)
        if info.distributed:
            local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
            threads = max(1, (os.cpu_count() or 1) // local)
            _worker(work, molecules, settings, info.rank, info.world_size, threads)
            _send_frames_to_root(work, total, info)
        elif processes == 1:
            _worker(work, molecules, settings, 0, 1, 0)
        else:
            threads = max(1, (os.cpu_count() or 1) // processes)
            tasks = [(work, molecules, settings, k, processes, threads) for k in range(processes)]
            # Workers read their OpenMP/BLAS thread counts from the environment when they start:
            # without this each takes every core, and spinning threads of P processes collide.
            with _environment(_THREAD_VARIABLES, str(threads)):
                with multiprocessing.get_context("spawn").Pool(processes) as pool:
                    pool.starmap(_worker, tasks)
        summary = on_root(lambda: _merge(work, output, molecules, settings), info)
        return summary | {"computed": len(_done(work)) - before}
    finally:
        if info.is_root:
            lock.release()
        finalize()


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def _environment(names: tuple[str, ...], value: str):
    """Set environment variables for processes started inside the block; restore them after."""
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: value for name in names})
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _frame_file(work: Path, index: int) -> Path:
    return work / f"frame-{index:06d}.npz"


def _done(work: Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in work.glob("frame-*.npz")}


def _worker(
    work: Path, molecules: list[Frames], settings: QMSettings, worker: int, workers: int, threads: int
) -> None:
    """Label frames ``worker``, ``worker + workers``, ... (numbered across molecules) not done yet."""
    if settings.engine == "pyscf" and threads > 0:  # processes share the cores
        from pyscf import lib

        lib.num_threads(threads)
    engine = engine_for(settings)
    work.mkdir(parents=True, exist_ok=True)  # a rank on another machine has no folder yet
    done = _done(work)
    offsets = _offsets(molecules)
    for k in range(worker, int(offsets[-1]), workers):
        if k in done:
            continue
        frames, local = _locate(molecules, offsets, k)
        result = engine.label(frames.numbers, frames.positions_nm[local])

        def write(handle, result=result) -> None:
            np.savez(
                handle, converged=result.converged, energy=result.energy_kj_per_mol,
                forces=result.forces_kj_per_mol_nm, cycles=result.cycles, seconds=result.seconds,
            )  # fmt: skip

        atomic_write_bytes(_frame_file(work, k), write)


def _send_frames_to_root(work: Path, count: int, info) -> None:
    """Every rank's frame files into rank 0's work folder (ranks on other machines need not share
    its disk); returns once rank 0 has them all. Files rank 0 already has are kept."""
    mine = {}
    for k in range(info.rank, count, info.world_size):
        if _frame_file(work, k).is_file():
            mine[k] = _frame_file(work, k).read_bytes()
    gathered = gather_to_root(mine, info)
    for files in gathered or []:
        for k, data in files.items():
            if not _frame_file(work, k).is_file():
                atomic_write_bytes(_frame_file(work, k), lambda handle, data=data: handle.write(data))


def _check_manifest(
    work: Path, source: Path, settings: QMSettings, every: int, molecule: str | None, topology: Path | None
) -> None:
    """Record what this work folder labels; a resume must label the same source the same way."""
    manifest = {"source": str(source.resolve()), "source_sha256": file_sha256(source), "every": every,
                "molecule": molecule, "topology_sha256": file_sha256(topology) if topology else None,
                "settings": asdict(settings),
                "engine_version": engine_for(settings).version()}  # fmt: skip
    path = work / MANIFEST
    if path.exists():
        recorded = json.loads(path.read_text())
        changed = [key for key in manifest if key != "source" and recorded.get(key) != manifest[key]]
        if changed:
            key = changed[0]
            raise QMInputError(
                f"{work}: this labelling run was started with {key}={recorded.get(key)!r}, now "
                f"{manifest[key]!r}; a resumed run must label the same frames the same way (use another "
                "output to start anew)"
            )
        return
    atomic_write_bytes(path, lambda handle: handle.write(json.dumps(manifest, indent=1).encode()))


def _merge(work: Path, output: Path, molecules: list[Frames], settings: QMSettings) -> dict:
    """Write the dataset once every frame is done, molecule after molecule; returns the summary
    (nothing is written while frames are missing)."""
    offsets = _offsets(molecules)
    count = int(offsets[-1])
    missing = sorted(set(range(count)) - _done(work))
    if missing:
        return {"frames": count, "missing": len(missing), "converged": None, "written": False}
    records = [np.load(_frame_file(work, k), allow_pickle=False) for k in range(count)]
    converged = np.array([bool(r["converged"]) for r in records], dtype=bool)
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.unlink(missing_ok=True)
    manifest = json.dumps(json.loads((work / MANIFEST).read_text()))  # one record for every molecule
    for m, frames in enumerate(molecules):
        span = slice(int(offsets[m]), int(offsets[m + 1]))
        _write_labels(temporary, output, frames, records[span], converged[span], manifest, settings)
    written = bool(converged.any())
    if written:
        os.replace(temporary, output)
    seconds = np.array([float(r["seconds"]) for r in records])
    return {"frames": count, "missing": 0, "converged": int(converged.sum()), "written": written,
            "seconds_per_label": float(seconds.mean()) if count else 0.0}  # fmt: skip


def _write_labels(
    path: Path, output: Path, frames: Frames, records: list, converged: np.ndarray, manifest: str,
    settings: QMSettings,
) -> None:  # fmt: skip
    """Add one molecule's converged frames, its per-frame QM record and the run's ``manifest``
    (JSON) to the dataset at ``path``."""
    from ase.data import atomic_masses, chemical_symbols

    from gnnmd.data.dataset import write_molecule

    keep = np.flatnonzero(converged)
    if not keep.size:
        return
    symbols = [chemical_symbols[z] for z in frames.numbers]
    topology = custom_topology(frames.name, symbols, atomic_masses[frames.numbers], [], source=str(output))
    forces = np.stack([records[k]["forces"] for k in keep])
    energies = np.array([float(records[k]["energy"]) for k in keep])
    description = f"{settings.engine} {settings.method}/{settings.basis} labels"
    write_molecule(path, topology, frames.positions_nm[keep], forces, energies, description)
    with h5py.File(path, "a") as file:
        group = file[f"molecules/{frames.name}"]
        group.attrs["qm"] = manifest
        for name, values in (("source_frame", frames.source_indices), ("converged", converged),
                             ("scf_cycles", [int(r["cycles"]) for r in records]),
                             ("seconds", [float(r["seconds"]) for r in records])):  # fmt: skip
            group.create_dataset(f"qm_frames/{name}", data=np.asarray(values))
