"""Simulation checkpoints: the exact state of a set of replicas, written atomically.

A checkpoint is one ``torch.save`` file (read back with ``weights_only=True``)
holding a format tag and version, the run's seed and step, and per replica its
global index, system name, bead count, thermostat, positions, velocities,
forces and energies, plus the number of trajectory frames already written.
The thermostat noise is counter-based (:mod:`gnnmd.sim.noise`), so
``(seed, step)`` *is* the random state: a run continued from a checkpoint draws
the same numbers as the uninterrupted run and follows the same trajectory. The
checkpoint names its noise generator; one written with another is refused on resume.

Writes go to a temporary file in the same folder, are flushed to disk, and
then renamed over the old checkpoint (``os.replace`` is atomic on POSIX): a
crash leaves either the old checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gnnmd.errors import CheckpointError
from gnnmd.runfolder import atomic_write_bytes
from gnnmd.safe_load import load_tensors

__all__ = ["atomic_write_bytes", "check_matches", "check_noise", "load_checkpoint", "save_checkpoint"]

FORMAT = "gnnmd-simulation-checkpoint"
FORMAT_VERSION = 2  # 2: the thermostat noise's generator is recorded ("noise")
#: The noise of version-1 checkpoints (a chained integer hash), which no current gnnmd draws.
LEGACY_NOISE = "lowbias32-chain"

_TENSORS = ("positions_nm", "velocities_nm_per_ps", "forces_kj_per_mol_nm", "energies_kj_per_mol")
_REQUIRED = (
    "format", "format_version", "step", "seed", "timestep_fs", "dtype", "replica_ids", "beads", "systems",
    "thermostat_temperatures_k", "frictions_per_ps", "frames_written", *_TENSORS,
)  # fmt: skip


def save_checkpoint(path: Path, state: dict, frames_written: list[int], extra: dict | None = None) -> None:
    """Write ``state`` (from :meth:`ReplicaRunner.state`) atomically to ``path``.

    ``frames_written`` holds, per replica, the trajectory frames on disk at this
    step; ``extra`` (plain Python values) is stored as is under ``"extra"``.
    """
    if len(frames_written) != len(state["replica_ids"]):
        raise ValueError("frames_written needs one count per replica")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    document["frames_written"] = [int(n) for n in frames_written]
    document["extra"] = dict(extra or {})
    atomic_write_bytes(Path(path), lambda file: torch.save(document, file))


def load_checkpoint(path: Path) -> dict:
    """Read and validate a checkpoint; any problem raises CheckpointError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    document = load_tensors(path, "checkpoint")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: field 'format' is not {FORMAT!r}; not a gnnmd simulation checkpoint")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {missing}")
    if int(document["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: field 'format_version' is {document['format_version']}, newer than this gnnmd "
            f"reads ({FORMAT_VERSION}); upgrade gnnmd"
        )
    _check_shapes(path, document)
    document.setdefault("noise", LEGACY_NOISE)
    return document


def check_noise(path: Path, document: dict, generator: str) -> None:
    """Refuse to continue a checkpoint whose thermostat noise is not ``generator``: the continued
    run would draw other numbers than the run that wrote it, so it would not be the same run."""
    if document.get("noise") != generator:
        raise CheckpointError(
            f"{path}: field 'noise' is {document.get('noise')!r}, but this gnnmd draws {generator!r} "
            "thermostat noise: continuing would not be the same run. Start a new run, or finish this one "
            "with the gnnmd version that began it"
        )


def _check_shapes(path: Path, document: dict) -> None:
    count = len(document["replica_ids"])
    for key in ("beads", "systems", "thermostat_temperatures_k", "frictions_per_ps", "frames_written"):
        if len(document[key]) != count:
            raise CheckpointError(f"{path}: field {key!r} has {len(document[key])} entries, expected {count}")
    beads = sum(int(n) for n in document["beads"])
    expected = {"energies_kj_per_mol": (count,)}
    for key in _TENSORS:
        value = document[key]
        want = expected.get(key, (beads, 3))
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != want:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(f"{path}: field {key!r} has shape {shape}, expected {want}")
        if key != "energies_kj_per_mol" and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: field {key!r} holds non-finite values")


def check_matches(path: Path, document: dict, expected: dict) -> None:
    """Raise CheckpointError for the first ``expected`` field whose checkpoint value differs."""
    for key, value in expected.items():
        if document.get(key) != value:
            raise CheckpointError(
                f"{path}: field {key!r} is {document.get(key)!r} but this run asks for {value!r}; "
                "resume with the options of the original run"
            )
