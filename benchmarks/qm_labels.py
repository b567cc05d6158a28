"""Labels per hour of ``gnnmd data qm`` on this machine: engines, levels of theory, 1 and 2 processes.

Usage (nothing else heavy running):

    python benchmarks/qm_labels.py [--work out/qm_bench]

Molecules: ethanol (ASE's geometry, perturbed by 0.01 nm Gaussian noise per frame) and alanine
dipeptide (frames of the shipped trajectory). Each case labels a fresh output with
``gnnmd.data.qm_labels.label`` and reports frames, wall seconds, labels per hour and the mean
per-label engine time. Frame counts are chosen to take about half a minute to a few minutes each.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import ase.build
import ase.io
import numpy as np

from gnnmd.data.ala2_allatom import PDB_FILE, ala2_allatom_frames
from gnnmd.data.qm import QMSettings
from gnnmd.data.qm_labels import label

CASES = [
    # (molecule, engine, method, basis, frames)
    ("ethanol", "tblite", "GFN2-xTB", "", 400),
    ("ala2", "tblite", "GFN2-xTB", "", 200),
    ("ethanol", "pyscf", "b3lyp", "sto-3g", 24),
    ("ala2", "pyscf", "b3lyp", "sto-3g", 8),
    ("ethanol", "pyscf", "b3lyp", "6-31g*", 8),
    ("ala2", "pyscf", "b3lyp", "6-31g*", 4),
]


def frames_file(work: Path, molecule: str, count: int) -> Path:
    path = work / f"{molecule}_{count}.xyz"
    if molecule == "ethanol":
        rng = np.random.default_rng(0)
        images = []
        for _ in range(count):
            atoms = ase.build.molecule("CH3CH2OH")
            atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)  # Å
            images.append(atoms)
    else:
        template = ase.io.read(str(PDB_FILE))
        positions, _ = ala2_allatom_frames()
        images = []
        for frame in positions[:count]:
            atoms = template.copy()
            atoms.positions = frame * 10.0
            atoms.pbc = False
            images.append(atoms)
    ase.io.write(str(path), images)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/qm_bench"))
    parser.add_argument("--engines", default="tblite,pyscf", help="engines to measure (tblite,pyscf)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    header = ("molecule", "engine", "level", "P", "frames", "wall s", "labels/h", "s/label")
    print("{:<9}{:<8}{:<18}{:>2}{:>8}{:>9}{:>10}{:>9}".format(*header))
    for molecule, engine, method, basis, count in CASES:
        if engine not in args.engines.split(","):
            continue
        source = frames_file(args.work, molecule, count)
        for processes in (1, 2):
            stem = f"{molecule}_{engine}_{method}_{basis or 'none'}_{processes}".replace("*", "s")
            output = args.work / f"{stem}.h5"
            shutil.rmtree(str(output) + ".qm", ignore_errors=True)
            output.unlink(missing_ok=True)
            settings = QMSettings(engine, method, basis or "sto-3g")
            started = time.perf_counter()
            summary = label(source, output, settings, processes=processes)
            wall = time.perf_counter() - started
            level = f"{method}/{basis}" if basis else method
            per_label = summary["seconds_per_label"]
            print(f"{molecule:<9}{engine:<8}{level:<18}{processes:>2}{count:>8}{wall:>9.1f}"
                  f"{3600 * count / wall:>10.0f}{per_label:>9.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
