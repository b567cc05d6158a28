"""Per-replica output: trajectories through mdtraj (DCD or XTC) and an energy/temperature CSV.

Replica r of a run writes ``replica_{r:04d}.{dcd,xtc}`` and ``replica_{r:04d}.csv``
in the output folder, whatever process it ran in: a sharded ``torchrun`` run
and a single-process run produce the same files. Frames are in nm in memory;
DCD stores Å by convention (converted here through :mod:`gnnmd.units`), XTC
stores nm and the time in ps.

Continuing a run keeps exactly the frames and rows the checkpoint counted and
discards anything written after it (a crash between checkpoints), by
rewriting the kept part to a temporary file and renaming it into place.
"""

from __future__ import annotations

import csv
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import mdtraj
import numpy as np
from mdtraj.formats import DCDTrajectoryFile, XTCTrajectoryFile

from gnnmd.errors import SimulationError
from gnnmd.runfolder import write_failure
from gnnmd.topology import CGTopology
from gnnmd.units import ANGSTROM_PER_NM

FORMATS = ("dcd", "xtc")
CSV_COLUMNS = ("step", "time_ps", "potential_energy_kj_mol", "kinetic_energy_kj_mol", "temperature_k")
#: Appended to :data:`CSV_COLUMNS` in runs with a committee (see :mod:`gnnmd.sim.committee`).
COMMITTEE_COLUMNS = ("force_disagreement_rms_kj_mol_nm", "force_disagreement_max_kj_mol_nm")


def replica_stem(replica: int) -> str:
    """File stem of global replica ``replica``: ``replica_0007``."""
    return f"replica_{replica:04d}"


def fsync_path(path: Path) -> None:
    """Flush a file's written data to disk through a fresh descriptor (works for files mdtraj holds open)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_raw(path: Path, fmt: str, count: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The first ``count`` frames of ``path`` in the file's own units, and XTC times and steps."""
    if fmt == "dcd":
        with DCDTrajectoryFile(str(path), "r") as file:
            xyz, _, _ = file.read(n_frames=count)
        return xyz, None, None
    with XTCTrajectoryFile(str(path), "r") as file:
        xyz, time, step, _ = file.read(n_frames=count)
    return xyz, time, step


#: The DCD (CHARMM/AKMA) time unit in ps.
AKMA_TIME_PS = 0.04888821
#: Byte offsets in a DCD header of ISTART, NSAVC (int32) and DELTA (float32).
_DCD_ISTART, _DCD_NSAVC, _DCD_DELTA = 12, 16, 44


class TrajectoryWriter:
    """Frames of one replica, appended as the run goes.

    Args:
        path: the .dcd or .xtc file.
        fmt: "dcd" or "xtc".
        keep_frames: frames of an existing file to keep (continuing a run); 0 starts afresh.
        frame_interval_ps: time between frames, ps. XTC frames carry their own time;
            a DCD file states it in its header (ISTART 0, NSAVC 1, DELTA = the interval
            in AKMA units), so readers such as VMD and MDAnalysis see time in ps.
    """

    def __init__(
        self, path: Path, fmt: str, keep_frames: int = 0, frame_interval_ps: float | None = None
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"trajectory format {fmt!r} is not one of {FORMATS}")
        self.path = Path(path)
        self.fmt = fmt
        self.frames = 0
        self.frame_interval_ps = frame_interval_ps
        if keep_frames <= 0:
            self.file = self._open(self.path)
            return
        kept = self._kept(keep_frames)
        # Write the kept frames to a temporary name, then rename: the old file stays whole until then.
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        self.file = self._open(temporary)
        xyz, time, step = kept
        for index in range(keep_frames):
            # Copied in the file's own units: kept frames stay bit-identical.
            self._write_raw(
                xyz[index], time[index] if time is not None else 0.0, step[index] if step is not None else 0
            )
        os.replace(temporary, self.path)  # the open handle follows the file

    def _open(self, path: Path) -> DCDTrajectoryFile | XTCTrajectoryFile:
        # mdtraj creates the file at the first write.
        cls = DCDTrajectoryFile if self.fmt == "dcd" else XTCTrajectoryFile
        return cls(str(path), "w", force_overwrite=True)

    def _kept(self, count: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        if not self.path.is_file():
            raise SimulationError(f"{self.path}: missing; the checkpoint counts {count} frames in it")
        xyz, time, step = _read_raw(self.path, self.fmt, count)
        if len(xyz) < count:
            raise SimulationError(f"{self.path}: has {len(xyz)} frames, the checkpoint counts {count}")
        return xyz, time, step

    def _write_raw(self, xyz: np.ndarray, time_ps: float, step: int) -> None:
        frame = np.asarray(xyz, dtype=np.float32)[None]
        try:
            if self.fmt == "dcd":
                self.file.write(frame)
            else:
                times, steps = np.array([time_ps], dtype=np.float32), np.array([step], dtype=np.int32)
                self.file.write(frame, time=times, step=steps)
        except Exception as error:  # mdtraj reports a full disk as a TypeError
            raise write_failure(error, self.path, f"writing frame {self.frames}") from error
        self.frames += 1

    def write(self, positions_nm: np.ndarray, time_ps: float, step: int) -> None:
        """Append one frame: positions (n, 3) nm at ``time_ps`` (ps), MD step ``step``."""
        xyz = np.asarray(positions_nm, dtype=np.float32)
        self._write_raw(xyz * np.float32(ANGSTROM_PER_NM) if self.fmt == "dcd" else xyz, time_ps, step)

    def sync(self) -> None:
        """Make every written frame durable (before a checkpoint counts it)."""
        if self.fmt == "xtc":
            self.file.flush()
        self._stamp_time()
        fsync_path(self.path)

    def close(self) -> None:
        try:
            self.file.close()
        except Exception as error:  # a full disk again: the frames a checkpoint counts are synced
            raise write_failure(error, self.path, "closing the trajectory") from error
        self._stamp_time()

    def _stamp_time(self) -> None:
        """Write the frame interval into a DCD header (mdtraj's writer leaves 1 AKMA unit per frame)."""
        if self.fmt != "dcd" or self.frame_interval_ps is None or self.frames == 0:
            return
        with open(self.path, "r+b") as handle:  # only fields the writer never touches again
            handle.seek(_DCD_ISTART)
            handle.write(struct.pack("<ii", 0, 1))
            handle.seek(_DCD_DELTA)
            handle.write(struct.pack("<f", self.frame_interval_ps / AKMA_TIME_PS))


def dcd_frame_interval_ps(path: Path) -> float:
    """The time between frames (ps) that a DCD header states: NSAVC x DELTA (AKMA units)."""
    with open(path, "rb") as handle:
        header = handle.read(_DCD_DELTA + 4)
    (nsavc,) = struct.unpack_from("<i", header, _DCD_NSAVC)
    (delta,) = struct.unpack_from("<f", header, _DCD_DELTA)
    return nsavc * delta * AKMA_TIME_PS


class EnergyLog:
    """The CSV log of one replica (energies kJ/mol, time ps).

    Args:
        path: the .csv file.
        keep_until_step: continuing a run, keep the existing rows with step <= this; None starts afresh.
        columns: :data:`CSV_COLUMNS`, optionally followed by extra columns (a committee's).
    """

    def __init__(
        self, path: Path, keep_until_step: int | None = None, columns: Sequence[str] = CSV_COLUMNS
    ) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        if self.columns[: len(CSV_COLUMNS)] != CSV_COLUMNS:
            raise ValueError(f"log columns must start with {CSV_COLUMNS}, got {self.columns}")
        rows: list[list[str]] = []
        if keep_until_step is not None and self.path.is_file():
            rows = self._kept_rows(keep_until_step)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        self.file = temporary.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.columns)
        self.writer.writerows(rows)
        self.file.flush()
        os.replace(temporary, self.path)

    def _kept_rows(self, keep_until_step: int) -> list[list[str]]:
        with self.path.open(newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header != list(self.columns):
                hint = ""
                if header is not None and set(header) ^ set(self.columns) <= set(COMMITTEE_COLUMNS):
                    hint = "; the committee columns differ: continue with the committee of the original run"
                raise SimulationError(f"{self.path}: header {header} is not {list(self.columns)}{hint}")
            width = len(self.columns)
            return [row for row in reader if len(row) == width and int(row[0]) <= keep_until_step]

    def write(
        self,
        step: int,
        time_ps: float,
        potential_kj_mol: float,
        kinetic_kj_mol: float,
        temperature_k: float,
        extra: Sequence[str] = (),
    ) -> None:
        """Append one row; ``extra`` holds the formatted values of the columns after :data:`CSV_COLUMNS`."""
        if len(extra) != len(self.columns) - len(CSV_COLUMNS):
            wanted = self.columns[len(CSV_COLUMNS) :]
            raise ValueError(f"{self.path}: {len(extra)} extra values for the columns {wanted}")
        row = [
            step,
            f"{time_ps:.6f}",
            f"{potential_kj_mol:.6f}",
            f"{kinetic_kj_mol:.6f}",
            f"{temperature_k:.4f}",
        ]
        with self._named():
            self.writer.writerow([*row, *extra])

    def sync(self) -> None:
        with self._named():
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        with self._named():
            self.file.close()

    @contextmanager
    def _named(self) -> Iterator[None]:
        """A file object's OSError carries no path: give it this log's."""
        try:
            yield
        except OSError as error:
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, str(self.path)) from error


def save_frame_pdb(path: Path, topology: CGTopology, positions_nm: np.ndarray) -> None:
    """Write one frame (n, 3) nm as a PDB, atomically (temporary file, then rename)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp.pdb")
    mdtraj.Trajectory(np.asarray(positions_nm, dtype=np.float32)[None], topology.to_mdtraj()).save_pdb(
        str(temporary)
    )
    os.replace(temporary, path)


def save_topologies(directory: Path, systems: Sequence) -> None:
    """``<system>.pdb`` for each system (CG topology at native positions) beside its trajectories,
    so that any tool reads them without gnnmd: ``mdtraj.load("replica_0000.dcd", top="chignolin.pdb")``."""
    for system in systems:
        save_frame_pdb(Path(directory) / f"{system.name}.pdb", system.topology, system.positions_nm)
