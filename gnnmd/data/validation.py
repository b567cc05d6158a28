"""Checks of reference frames: shapes, finite values, and values plausible for their declared units.

A dataset declares nm and kJ/mol. Frames in Å labelled nm, forces in
kJ/mol/Å or garbage (1e30) train "successfully" into a useless model, so every
dataset is checked when it is opened and every frame before it is written. An
error names the file, the molecule, the field, the first bad frame and its
value.

Plausible ranges (generous: they catch unit mistakes, not physics):

- bonded beads: the median bond length of every frame in [0.05, 1.0] nm
  (covalent bonds are 0.1-0.16 nm, CG bonds 0.15-0.6 nm; Å read as nm gives
  1-6 "nm", pm or a structure scaled to zero gives < 0.05);
- forces: every component below 1e6 kJ/mol/nm in magnitude (all-atom forces
  at 300 K stay below about 1e4);
- energies: finite and below 1e9 kJ/mol in magnitude.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from gnnmd.errors import GnnmdError

BOND_RANGE_NM = (0.05, 1.0)
MAX_FORCE_KJ_PER_MOL_NM = 1.0e6
MAX_ENERGY_KJ_PER_MOL = 1.0e9
#: Frames read at once when a stored dataset is scanned.
SCAN_BLOCK = 4096


class DatasetError(GnnmdError, ValueError):
    """A dataset file is missing, malformed, or inconsistent."""


def check_shapes(
    path: str | os.PathLike, molecule: str, beads: int, shapes: dict[str, tuple[int, ...]]
) -> None:
    """Shapes of ``coordinates``/``forces`` (F, beads, 3), ``energies`` and ``trajectories`` (F,),
    one F for all."""
    frames = shapes["coordinates"][0] if len(shapes["coordinates"]) else -1
    for field, shape in shapes.items():
        wanted = (frames,) if field in ("energies", "trajectories") else (frames, beads, 3)
        if tuple(shape) != wanted:
            raise DatasetError(
                f"{path}: molecule {molecule!r}, field {field!r} has shape {tuple(shape)}, expected "
                f"{wanted} ({beads} beads in its topology)"
            )


def check_frames(
    path: str | os.PathLike,
    molecule: str,
    bonds: np.ndarray,
    arrays: dict[str, np.ndarray],
    first_frame: int = 0,
) -> None:
    """Finite, plausibly scaled ``coordinates`` (F, n, 3) nm, ``forces`` kJ/mol/nm and ``energies`` (F,).

    ``first_frame`` is the index of ``arrays``' first frame in the molecule (for the message).
    """
    for field, array in arrays.items():
        bad = ~np.isfinite(array)
        if bad.any():
            _raise_at(path, molecule, field, array, bad, first_frame, "is not finite")
    for field, limit, unit in (("forces", MAX_FORCE_KJ_PER_MOL_NM, "kJ/mol/nm"),
                               ("energies", MAX_ENERGY_KJ_PER_MOL, "kJ/mol")):  # fmt: skip
        values = arrays.get(field)
        if values is not None and (np.abs(values) > limit).any():
            problem = f"exceeds {limit:g} {unit} in magnitude ({field} in other units?)"
            _raise_at(path, molecule, field, values, np.abs(values) > limit, first_frame, problem)
    coordinates = arrays.get("coordinates")
    if coordinates is not None and len(bonds) and len(coordinates):
        _check_bond_lengths(path, molecule, coordinates, np.asarray(bonds), first_frame)


def _check_bond_lengths(
    path: str | os.PathLike, molecule: str, coordinates: np.ndarray, bonds: np.ndarray, first_frame: int
) -> None:
    vectors = coordinates[:, bonds[:, 0]] - coordinates[:, bonds[:, 1]]
    median = np.median(np.linalg.norm(vectors, axis=-1), axis=1)  # (F,) nm
    low, high = BOND_RANGE_NM
    bad = np.flatnonzero((median < low) | (median > high))
    if len(bad):
        frame = int(bad[0])
        raise DatasetError(
            f"{path}: molecule {molecule!r}, field 'coordinates', frame {first_frame + frame}: median bond "
            f"length {median[frame]:.4g} nm is outside [{low}, {high}] nm; coordinates must be in nm "
            "(Å values are 10x larger)"
        )


def _raise_at(
    path: str | os.PathLike,
    molecule: str,
    field: str,
    array: np.ndarray,
    bad: np.ndarray,
    first_frame: int,
    problem: str,
) -> None:
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"frame {first_frame + index[0]}" + (f", bead {index[1]}" if len(index) > 1 else "")
    raise DatasetError(
        f"{path}: molecule {molecule!r}, field {field!r}, {where}: value {float(array[index]):g} {problem}"
    )


def scan_molecule(
    path: str | os.PathLike, molecule: str, group, bonds: np.ndarray, fields: Sequence[str]
) -> None:
    """Check a stored molecule's ``fields`` block by block (datasets may exceed memory)."""
    frames = group["coordinates"].shape[0]
    for start in range(0, frames, SCAN_BLOCK):
        block = slice(start, min(start + SCAN_BLOCK, frames))
        check_frames(path, molecule, bonds, {field: group[field][block] for field in fields}, start)
