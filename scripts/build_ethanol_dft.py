"""DFT labels to a trained all-atom model, end to end: ethanol at B3LYP/STO-3G.

    python scripts/build_ethanol_dft.py [--work out/ethanol-dft] [--frames 1000] [--epochs 200]

1. Frames: Langevin dynamics of ethanol with GFN2-xTB (tblite through ASE) at 300 K, 0.5 fs,
   one frame every 20 steps after 1 ps: conformers from a physical ensemble, not perturbations.
2. Labels: ``gnnmd data qm`` with PySCF B3LYP/STO-3G (``--engine``, ``--method``, ``--basis``
   choose another level); resumable: running the command again labels what is missing.
3. Training: energy + force matching (the all-atom alanine-dipeptide recipe, energy weight 1)
   on the first 80% of the trajectory (10% of those held out for validation).
4. Test: on the last 20% (a later stretch of the trajectory training never sees), the model's
   force and energy errors against the DFT labels, beside the labels' own spread.
5. ASE: Langevin dynamics with the trained model through gnnmd's ASE calculator (300 K).

Everything goes to WORK (frames, labels, training run, ``summary.json``); nothing is shipped.
Recorded results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from build_ala2_allatom import train  # this folder: the all-atom training recipe
from build_ala2_xtb import ase_dynamics, test_errors

from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.data.qm import QMSettings
from gnnmd.data.qm_labels import label
from gnnmd.models import load_model

REPO = Path(__file__).resolve().parents[1]
TRAIN_SHARE = 0.8


def sample_frames(path: Path, frames: int, seed: int = 0) -> None:
    """``frames`` ethanol conformers (ASE .xyz, Å) from GFN2-xTB Langevin dynamics at 300 K."""
    import ase.io
    from ase import units
    from ase.build import molecule
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tblite.ase import TBLite

    atoms = molecule("CH3CH2OH")
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    atoms.set_constraint(FixCom())  # not Langevin's fixcm, which samples small molecules wrongly
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
    dynamics = Langevin(atoms, 0.5 * units.fs, temperature_K=300.0, friction=0.01 / units.fs,
                        fixcm=False, rng=np.random.default_rng(seed + 1))  # fmt: skip
    dynamics.run(2000)  # 1 ps from the optimised-looking start
    images = []
    for _ in range(frames):
        dynamics.run(20)
        image = atoms.copy()
        image.set_constraint()  # the frames file holds positions only
        images.append(image)
    ase.io.write(str(path), images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "ethanol-dft", help="scratch folder")
    parser.add_argument("--frames", type=int, default=1000, help="conformers to label (1000)")
    parser.add_argument("--engine", default="pyscf")
    parser.add_argument("--method", default="b3lyp")
    parser.add_argument("--basis", default="sto-3g")
    parser.add_argument("--processes", type=int, default=1, help="labelling processes (1)")
    parser.add_argument("--epochs", type=int, default=200, help="maximum epochs (200)")
    parser.add_argument("--md-ps", type=float, default=2.0, help="ASE Langevin dynamics, ps (2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    frames = args.work / "ethanol_frames.xyz"
    if not frames.is_file():
        sample_frames(frames, args.frames)
    settings = QMSettings(args.engine, args.method, args.basis)
    labels = args.work / "ethanol_labels.h5"
    started = time.perf_counter()
    labelling = label(frames, labels, settings, processes=args.processes)
    labelling["wall_seconds"] = time.perf_counter() - started
    dataset = ForceDataset(labels)
    coordinates, forces = (np.asarray(a, dtype=np.float64) for a in dataset.frames(0))
    energies, topology = dataset.energies(0), dataset.topologies[0]
    cut = int(round(TRAIN_SHARE * len(coordinates)))
    train_file = args.work / "ethanol_train.h5"
    level = f"{args.method}/{args.basis}" if args.engine == "pyscf" else args.method
    if not train_file.is_file():
        write_molecule(train_file, topology, coordinates[:cut], forces[:cut], energies[:cut],
                       description=f"{level} labels, frames 0-{cut - 1}")  # fmt: skip
    metadata = {"name": "ethanol-dft", "description": f"all-atom ethanol, {level} labels ({args.engine})"}
    trainer = train(train_file, args.work, args.epochs, energy_weight=1.0, metadata=metadata)
    model = load_model(args.work / "train" / "best.pt", dtype=torch.float64)
    summary = {
        "level": level,
        "labelling": labelling,
        "validation_force_rmse_kj_per_mol_nm": trainer.best_val,
        "epochs_run": len(trainer.history),
        **test_errors(model, topology, coordinates[cut:], forces[cut:], energies[cut:], cut),
        "ase_langevin": ase_dynamics(args.work / "train" / "best.pt", coordinates[cut], args.md_ps,
                                     list(topology.bead_types)),  # fmt: skip
    }
    print(json.dumps(summary, indent=1))
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
