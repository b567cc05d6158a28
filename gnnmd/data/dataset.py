"""The gnnmd dataset format: CG coordinates and forces in HDF5, read lazily.

Layout (units are the internal ones and are recorded in the file)::

    /                      attrs: format="gnnmd-dataset", format_version, length_unit="nm",
                                  energy_unit="kJ/mol"
    /molecules/<name>/     attrs: source, description; recompute (JSON, only from
                                  gnnmd.data.recompute: Hamiltonian and per-trajectory progress);
                                  biased_trajectories (int array, optional: trajectories run
                                  with a bias on CG coordinates; their forces are unbiased
                                  mean-force samples for training, their frames are not
                                  Boltzmann-distributed: never held out, histogrammed or
                                  used as a reference)
        coordinates        (F, n, 3) float32, nm        chunked (about 64 kB per chunk), Fletcher-32
                                                        checksum per chunk (all three arrays)
        forces             (F, n, 3) float32, kJ/mol/nm
        energies           (F,) float64, kJ/mol         optional
        trajectories       (F,) int32                   optional: the trajectory each frame belongs
                                                        to (independent runs; training holds out
                                                        whole ones)
        topology/          the CGTopology: bead_types, masses_amu, bonds, angles,
                           dihedrals, bead_names, residue_names, residue_ids, chain_ids,
                           atom_indices (+ attrs name, mapping, source)

Frames are read on demand, so datasets larger than memory work; each process
(and each DataLoader worker) opens its own file handle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
import torch

from gnnmd.data.validation import DatasetError, check_frames, check_shapes, scan_molecule
from gnnmd.topology import CGTopology

FORMAT = "gnnmd-dataset"
FORMAT_VERSION = 1
_STRING_FIELDS = ("bead_types", "bead_names", "residue_names", "chain_ids")
_ARRAY_FIELDS = ("masses_amu", "bonds", "angles", "dihedrals", "residue_ids", "atom_indices")

__all__ = ["DatasetError", "ForceDataset", "Frame", "append_frames", "write_molecule"]


def spread_indices(count: int, number: int) -> np.ndarray:
    """(number,) int64 indices into ``count`` items, evenly spaced from the first to the last.

    Items repeat when ``number`` > ``count``; ``spread_indices(count, min(count, n))`` picks at
    most n distinct ones. Evenly spread rather than the first n: frames next to each other in
    a trajectory are correlated, and a dataset's first frames may all come from one trajectory.
    """
    return np.linspace(0, count - 1, number).astype(np.int64)


def write_molecule(
    path: str | os.PathLike,
    topology: CGTopology,
    coordinates_nm: np.ndarray,
    forces_kj_per_mol_nm: np.ndarray,
    energies_kj_per_mol: np.ndarray | None = None,
    description: str = "",
    trajectories: np.ndarray | None = None,
    biased_trajectories: Sequence[int] = (),
) -> None:
    """Add one molecule's frames to the dataset at ``path`` (created if missing).

    Args:
        topology: the molecule; its name is the group name and must be new in the file.
        coordinates_nm: (F, n, 3) positions in nm.
        forces_kj_per_mol_nm: (F, n, 3) reference forces in kJ/mol/nm.
        energies_kj_per_mol: optional (F,) reference potential energies in kJ/mol, one per
            frame; stored as float64 and resizable, so :func:`append_frames` extends them.
        description: free text stored with the molecule.
        trajectories: optional (F,) non-negative ints, the independent trajectory of each frame.
        biased_trajectories: ids among ``trajectories`` of runs biased along CG coordinates
            (see the module docstring).

    Raises:
        DatasetError: an array has the wrong shape or non-finite values (the message names
            the file, the molecule and the field), or the molecule is already in the file.
    """
    arrays = _checked_arrays(path, topology, coordinates_nm, forces_kj_per_mol_nm, energies_kj_per_mol, 0)
    coordinates, forces, energies = arrays["coordinates"], arrays["forces"], arrays.get("energies")
    if trajectories is not None:
        trajectories = _checked_trajectories(path, topology.name, trajectories, len(coordinates))
    biased = np.asarray(sorted(set(int(i) for i in biased_trajectories)), dtype=np.int64)
    if len(biased) and (trajectories is None or not np.isin(biased, trajectories).all()):
        raise DatasetError(f"{path}: biased_trajectories of {topology.name!r} {biased.tolist()} are not "
                           "all among its frames' trajectories")  # fmt: skip
    with h5py.File(path, "a") as file:
        _stamp(file, path)
        group_name = f"molecules/{topology.name}"
        if group_name in file:
            raise DatasetError(f"{path}: molecule {topology.name!r} is already in the dataset")
        group = file.create_group(group_name)
        group.attrs["source"] = topology.source
        group.attrs["description"] = description
        if len(biased):
            group.attrs["biased_trajectories"] = biased
        # Resizable along frames, so generators can append (see append_frames); chunks of about
        # 64 kB, since a one-frame chunk makes reading a small molecule's frames cost ~1 ms each.
        shape = (None, topology.n_beads, 3)
        chunks = (_frames_per_chunk(topology.n_beads), topology.n_beads, 3)
        # Fletcher-32 checksums per chunk: a flipped bit on disk is an error on read, not a silent value.
        checked = {"fletcher32": True}
        group.create_dataset("coordinates", data=coordinates, chunks=chunks, maxshape=shape, **checked)
        group.create_dataset("forces", data=forces, chunks=chunks, maxshape=shape, **checked)
        if energies is not None:
            group.create_dataset("energies", data=energies, chunks=_ENERGY_CHUNK, maxshape=(None,), **checked)
        if trajectories is not None:
            group.create_dataset(
                "trajectories", data=trajectories, chunks=_ENERGY_CHUNK, maxshape=(None,), **checked
            )
        _write_topology(group.create_group("topology"), topology)


def append_frames(
    path: str | os.PathLike,
    topology: CGTopology,
    coordinates_nm: np.ndarray,
    forces_kj_per_mol_nm: np.ndarray,
    energies_kj_per_mol: np.ndarray | None = None,
) -> int:
    """Append frames (F, n, 3) to molecule ``topology.name`` (created if missing); returns its frame count.

    Coordinates in nm, forces in kJ/mol/nm, optional energies (F,) in kJ/mol. The
    molecule's stored topology must have the same bead types as ``topology``. A
    molecule that stores energies takes only frames with energies, and one without
    takes only frames without, so energies always stay in step with the frames.
    Everything is checked before anything is written.

    Raises:
        DatasetError: naming the file, the molecule and the offending field.
    """
    with h5py.File(path, "a") as file:
        exists = f"molecules/{topology.name}" in file
    if not exists:
        write_molecule(path, topology, coordinates_nm, forces_kj_per_mol_nm, energies_kj_per_mol)
        return len(coordinates_nm)
    with h5py.File(path, "a") as file:
        _check_header(file, path)
        group = file[f"molecules/{topology.name}"]
        stored = _read_topology(group["topology"])
        if "trajectories" in group:
            raise DatasetError(
                f"{path}: molecule {topology.name!r} records each frame's trajectory; appending frames "
                "without one is refused (write the molecule anew with write_molecule)"
            )
        if stored.bead_types != topology.bead_types:
            raise DatasetError(
                f"{path}: molecule {topology.name!r} holds other bead types than the frames appended"
            )
        start = group["coordinates"].shape[0]
        arrays = _checked_arrays(path, topology, coordinates_nm, forces_kj_per_mol_nm, None, start)
        has_energies = "energies" in group
        if has_energies and energies_kj_per_mol is None:
            raise DatasetError(
                f"{path}: molecule {topology.name!r} stores 'energies'; the appended frames bring none"
            )
        if not has_energies and energies_kj_per_mol is not None:
            raise DatasetError(
                f"{path}: molecule {topology.name!r} stores no 'energies'; the appended frames bring them"
            )
        if has_energies:
            arrays["energies"] = _checked_energies(
                path, topology.name, energies_kj_per_mol, len(arrays["coordinates"]), start
            )
        for label in arrays:
            dataset = group[label]
            if dataset.shape[0] != start:
                raise DatasetError(
                    f"{path}: molecule {topology.name!r} has {dataset.shape[0]} {label} "
                    f"but {start} coordinates"
                )
        for label, array in arrays.items():
            dataset = group[label]
            dataset.resize(start + len(array), axis=0)
            dataset[start:] = array
        return int(group["coordinates"].shape[0])


#: Energies are one float64 per frame: many frames per chunk.
_ENERGY_CHUNK = (1024,)
_CHUNK_BYTES = 65536


def _frames_per_chunk(n_beads: int) -> int:
    """Frames per coordinate/force chunk: about ``_CHUNK_BYTES`` of float32, at least one frame."""
    return max(1, _CHUNK_BYTES // (n_beads * 3 * 4))


def _checked_arrays(
    path: str | os.PathLike, topology: CGTopology, coordinates, forces, energies, first_frame: int
) -> dict[str, np.ndarray]:
    """Frames to write as float32 arrays (and float64 energies), checked: DatasetError names the field."""
    arrays = {
        "coordinates": np.asarray(coordinates, dtype=np.float32),
        "forces": np.asarray(forces, dtype=np.float32),
    }
    frames = arrays["coordinates"].shape[0] if arrays["coordinates"].ndim else 0
    check_shapes(path, topology.name, topology.n_beads, {k: v.shape for k, v in arrays.items()})
    check_frames(path, topology.name, topology.bonds, arrays, first_frame)
    if energies is not None:
        arrays["energies"] = _checked_energies(path, topology.name, energies, frames, first_frame)
    return arrays


def _checked_energies(
    path: str | os.PathLike, molecule: str, energies, frames: int, first_frame: int = 0
) -> np.ndarray:
    """``energies`` (kJ/mol) as a float64 (frames,) array, or a DatasetError naming file and molecule."""
    array = np.asarray(energies, dtype=np.float64)
    if array.shape != (frames,):
        raise DatasetError(
            f"{path}: energies of {molecule!r} have shape {array.shape}, expected ({frames},): one per frame"
        )
    check_frames(path, molecule, np.zeros((0, 2), dtype=np.int64), {"energies": array}, first_frame)
    return array


def _checked_trajectories(path: str | os.PathLike, molecule: str, trajectories, frames: int) -> np.ndarray:
    array = np.asarray(trajectories)
    if array.shape != (frames,) or not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
        raise DatasetError(
            f"{path}: trajectories of {molecule!r} must be {frames} non-negative integers (one per frame), "
            f"got shape {array.shape} of {array.dtype}"
        )
    return array.astype(np.int32)


def _stamp(file: h5py.File, path: str | os.PathLike) -> None:
    if "format" not in file.attrs:
        file.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION, length_unit="nm", energy_unit="kJ/mol"
        )
    _check_header(file, path)


def _check_header(file: h5py.File, path: str | os.PathLike) -> None:
    if file.attrs.get("format") != FORMAT:
        raise DatasetError(f"{path}: attribute 'format' is {file.attrs.get('format')!r}, expected {FORMAT!r}")
    version = int(file.attrs.get("format_version", -1))
    if not 1 <= version <= FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {version} is not readable (this gnnmd reads 1..{FORMAT_VERSION})"
        )
    units = (file.attrs.get("length_unit"), file.attrs.get("energy_unit"))
    if units != ("nm", "kJ/mol"):
        raise DatasetError(f"{path}: units {units} are not (nm, kJ/mol)")


def _write_topology(group: h5py.Group, topology: CGTopology) -> None:
    group.attrs.update(name=topology.name, mapping=topology.mapping, source=topology.source)
    for field in _STRING_FIELDS:
        group.create_dataset(field, data=np.array(getattr(topology, field), dtype=h5py.string_dtype()))
    for field in _ARRAY_FIELDS:
        group.create_dataset(field, data=getattr(topology, field))


def _read_topology(group: h5py.Group) -> CGTopology:
    fields = {
        f: tuple(s.decode() if isinstance(s, bytes) else s for s in group[f][()]) for f in _STRING_FIELDS
    }
    fields.update({f: group[f][()] for f in _ARRAY_FIELDS})
    return CGTopology(
        name=str(group.attrs["name"]),
        mapping=str(group.attrs["mapping"]),
        source=str(group.attrs["source"]),
        **fields,
    )


@dataclass(frozen=True)
class Frame:
    """One training sample: a molecule index and its positions (n, 3) nm and forces (n, 3) kJ/mol/nm."""

    molecule: int
    positions: torch.Tensor
    forces: torch.Tensor


class ForceDataset(torch.utils.data.Dataset):
    """All frames of a gnnmd dataset file, read lazily.

    Args:
        path: the HDF5 file.
        molecules: names to use (default: all, sorted).

    Every frame is checked on open (shapes, finite values, plausible units; see
    :mod:`gnnmd.data.validation`).

    Raises:
        DatasetError: naming the file, molecule, field, frame and value of the first problem;
            also for a damaged HDF5 file.
    """

    def __init__(self, path: str | os.PathLike, molecules: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: no such dataset file")
        try:
            file = h5py.File(self.path, "r")
        except OSError as error:
            raise DatasetError(f"{self.path}: not an HDF5 file ({error})") from error
        try:
            with file:
                counts = self._read_index(file, molecules)
        except DatasetError:
            raise
        except Exception as error:  # h5py raises OSError, KeyError, ValueError... for damaged files
            checksum = "a stored checksum does not match, " if "filter returned failure" in str(error) else ""
            raise DatasetError(
                f"{self.path}: damaged or malformed dataset ({checksum}{type(error).__name__}: {error})"
            ) from error
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _read_index(self, file: h5py.File, molecules: Sequence[str] | None) -> list[int]:
        """Molecules, topologies and frame counts, after checking every frame."""
        _check_header(file, self.path)
        available = sorted(file.get("molecules", {}).keys())
        names = list(molecules) if molecules is not None else available
        unknown = [m for m in names if m not in available]
        if unknown or not names:
            raise DatasetError(
                f"{self.path}: molecules {unknown or '(none)'} not found; available: {available}"
            )
        self.molecules = names
        self.topologies = [_read_topology(file[f"molecules/{m}/topology"]) for m in names]
        #: Per molecule: whether the file stores reference energies for its frames.
        self.has_energies = [f"molecules/{m}/energies" in file for m in names]
        #: Per molecule: each frame's trajectory (independent runs), or None when not recorded.
        self.trajectory_ids: list[np.ndarray | None] = []
        #: Per molecule: the trajectories run with a bias (int64, often empty; see the module docstring).
        self.biased_trajectories: list[np.ndarray] = []
        for name, topology, has_energies in zip(names, self.topologies, self.has_energies, strict=True):
            group = file[f"molecules/{name}"]
            fields = ["coordinates", "forces"] + (["energies"] if has_energies else [])
            shapes = {f: group[f].shape for f in fields}
            if "trajectories" in group:
                shapes["trajectories"] = group["trajectories"].shape
            check_shapes(self.path, name, topology.n_beads, shapes)
            scan_molecule(self.path, name, group, topology.bonds, fields)
            ids = group["trajectories"][()] if "trajectories" in group else None
            if ids is not None:
                ids = _checked_trajectories(self.path, name, ids, shapes["coordinates"][0])
            self.trajectory_ids.append(ids)
            self.biased_trajectories.append(np.asarray(group.attrs.get("biased_trajectories", []), np.int64))
        return [file[f"molecules/{m}/coordinates"].shape[0] for m in names]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def biased_frames(self, molecule: int) -> np.ndarray:
        """(F,) bool over ``molecule``'s frames: those of biased trajectories."""
        count = int(self.offsets[molecule + 1] - self.offsets[molecule])
        ids = self.trajectory_ids[molecule]
        biased = self.biased_trajectories[molecule]
        return np.zeros(count, dtype=bool) if ids is None or not len(biased) else np.isin(ids, biased)

    def _handle(self) -> h5py.File:
        # One handle per process: HDF5 handles must not cross a fork.
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def locate(self, index: int) -> tuple[int, int]:
        """(molecule index, frame within the molecule) of a global frame index."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for {len(self)} frames")
        molecule = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return molecule, int(index - self.offsets[molecule])

    def __getitem__(self, index: int) -> Frame:
        molecule, frame = self.locate(index)
        group = self._handle()[f"molecules/{self.molecules[molecule]}"]
        return Frame(
            molecule=molecule,
            positions=torch.from_numpy(group["coordinates"][frame]),
            forces=torch.from_numpy(group["forces"][frame]),
        )

    def frames(self, molecule: int, indices: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates and forces (F, n, 3) of one molecule (all frames or ``indices``)."""
        group = self._handle()[f"molecules/{self.molecules[molecule]}"]
        if indices is None:
            return group["coordinates"][()], group["forces"][()]
        order = np.sort(np.asarray(list(indices), dtype=np.int64))
        return group["coordinates"][order], group["forces"][order]

    def energies(self, molecule: int, indices: Iterable[int] | None = None) -> np.ndarray:
        """Reference energies (F,) kJ/mol, float64, of one molecule, in the order of :meth:`frames`."""
        if not self.has_energies[molecule]:
            raise DatasetError(
                f"{self.path}: molecule {self.molecules[molecule]!r} has no 'energies' (only forces)"
            )
        stored = self._handle()[f"molecules/{self.molecules[molecule]}/energies"]
        if indices is None:
            return stored[()].astype(np.float64)
        order = np.sort(np.asarray(list(indices), dtype=np.int64))
        return stored[order].astype(np.float64)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state
