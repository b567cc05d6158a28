"""The progress record of a force-recomputing import (:mod:`gnnmd.data.recompute`).

Each molecule's ``recompute`` attribute (JSON) holds its Hamiltonian and, per trajectory
(named by a :func:`fingerprint` of its bytes, wherever the file lies), how many frames are
done. An interrupted import continues where the record stands; frames written past it are
dropped; one molecule never mixes Hamiltonians.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py

from gnnmd.data.dataset import DatasetError

LOG_ATTRIBUTE = "recompute"
_FINGERPRINT_BYTES = 1 << 20


def fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a file's size and its first and last MiB: names a trajectory wherever it lies."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as file:
        digest.update(file.read(_FINGERPRINT_BYTES))
        file.seek(max(0, size - _FINGERPRINT_BYTES))
        digest.update(file.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()


@dataclass(frozen=True)
class ImportLog:
    """The ``recompute`` attribute of one molecule: its Hamiltonian and each trajectory's progress.

    A trajectory's record is ``{"trajectory", "fingerprint", "stride", "frames", "complete"}``;
    the molecule's frames are the records' frames in order.
    """

    output: Path
    molecule: str
    hamiltonian: dict
    description: str

    def start(self, source: dict) -> dict:
        """This trajectory's record (new, or as left); drops frames written after the last record.

        Refuses a molecule with frames of another origin or Hamiltonian, a trajectory
        imported at another stride, and a new trajectory while another one is unfinished.
        """
        fresh = dict(source, frames=0, complete=False)
        if not self.output.exists():
            return fresh
        with h5py.File(self.output, "a") as file:
            group = file.get(f"molecules/{self.molecule}")
            if group is None:
                return fresh
            records = self._check(group)
            _truncate(group, sum(r["frames"] for r in records), self._where)
        for record in records:
            if record["fingerprint"] == source["fingerprint"]:
                if record["stride"] != source["stride"]:
                    raise DatasetError(
                        f"{self._where} holds {record['trajectory']} at stride {record['stride']}"
                    )
                return record
        unfinished = [r["trajectory"] for r in records if not r["complete"]]
        if unfinished:
            raise DatasetError(f"{self._where}: finish {unfinished[0]} (run it again) before adding more")
        return fresh

    def write(self, record: dict) -> None:
        """Store ``record`` (this trajectory's progress), after its frames are written."""
        with h5py.File(self.output, "a") as file:
            group = file[f"molecules/{self.molecule}"]
            if LOG_ATTRIBUTE in group.attrs:
                log = json.loads(group.attrs[LOG_ATTRIBUTE])
            else:
                log = {"hamiltonian": self.hamiltonian, "sources": []}
                group.attrs["description"] = self.description
            others = [r for r in log["sources"] if r["fingerprint"] != record["fingerprint"]]
            log["sources"] = [*others, record]
            group.attrs[LOG_ATTRIBUTE] = json.dumps(log)

    @property
    def _where(self) -> str:
        return f"{self.output}: molecule {self.molecule!r}"

    def _check(self, group: h5py.Group) -> list[dict]:
        if LOG_ATTRIBUTE not in group.attrs:
            raise DatasetError(
                f"{self._where} holds frames from another importer; use --name or another file"
            )
        log = json.loads(group.attrs[LOG_ATTRIBUTE])
        if log["hamiltonian"] != self.hamiltonian:
            raise DatasetError(
                f"{self._where} has forces from {log['hamiltonian']}, not {self.hamiltonian}; "
                "one molecule must have one Hamiltonian: use --name or another file"
            )
        return log["sources"]


def _truncate(group: h5py.Group, frames: int, where: str) -> None:
    """Drop frames written after the last record (an interrupted chunk)."""
    for label in ("coordinates", "forces"):
        if group[label].shape[0] < frames:
            raise DatasetError(f"{where}: {group[label].shape[0]} {label} frames, the log records {frames}")
        group[label].resize(frames, axis=0)
