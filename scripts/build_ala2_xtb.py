"""Quantum-chemistry labels to a trained all-atom model, end to end: alanine dipeptide at GFN2-xTB.

    python scripts/build_ala2_xtb.py [--work out/ala2-xtb] [--epochs 100] [--md-ps 2]

1. Frames: the shipped alanine-dipeptide trajectory (2000 frames, gnnmd/shipped/reference_data/ala2_allatom).
2. Labels: ``gnnmd data qm`` with tblite GFN2-xTB (energies and forces for every frame; resumable).
3. Training: energy + force matching (``gnnmd.train.Trainer``) on frames 0-1799 (10% of them held out
   for validation); frames 1800-1999 are a test set training never sees.
4. Test: force and energy errors of the model against the xTB labels of the test frames, beside the
   labels' own force RMS.
5. ASE: Langevin dynamics (300 K, 0.5 fs) with the trained model through gnnmd's ASE calculator;
   the temperature, the largest force and whether it stayed finite are reported.

Everything goes to WORK (labels, training run with ``learning_curve.png``, ``summary.json``);
nothing is shipped. The recorded results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from build_ala2_allatom import train  # this folder: the shipped model's training recipe

from gnnmd.data.ala2_allatom import ala2_allatom_topology, import_ala2_allatom
from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.data.qm import QMSettings
from gnnmd.data.qm_labels import label
from gnnmd.models import load_model

REPO = Path(__file__).resolve().parents[1]
TRAIN_FRAMES = 1800
XTB = QMSettings("tblite", "GFN2-xTB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "ala2-xtb", help="scratch folder")
    parser.add_argument("--epochs", type=int, default=100, help="maximum epochs (100)")
    parser.add_argument("--md-ps", type=float, default=2.0, help="ASE Langevin dynamics, ps (2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # reproducible reductions; the model is small
    args.work.mkdir(parents=True, exist_ok=True)
    frames = args.work / "ala2_frames.h5"
    if not frames.is_file():
        import_ala2_allatom(frames)
    labels = args.work / "ala2_xtb.h5"
    started = time.perf_counter()
    labelling = label(frames, labels, XTB)
    labelling["wall_seconds"] = time.perf_counter() - started
    coordinates, forces, energies = _arrays(labels)
    train_file = args.work / "ala2_xtb_train.h5"
    if not train_file.is_file():
        topology = ForceDataset(labels).topologies[0]
        write_molecule(train_file, topology, coordinates[:TRAIN_FRAMES], forces[:TRAIN_FRAMES],
                       energies[:TRAIN_FRAMES], description="GFN2-xTB labels, frames 0-1799")  # fmt: skip
    # The shipped ala2-allatom model's training run, here with energies (weight 1) as well as forces.
    metadata = {"name": "ala2-xtb", "description": "all-atom alanine dipeptide, GFN2-xTB labels"}
    trainer = train(train_file, args.work, args.epochs, energy_weight=1.0, metadata=metadata)
    model = load_model(args.work / "train" / "best.pt", dtype=torch.float64)
    summary = {
        "labelling": labelling,
        "validation_force_rmse_kj_per_mol_nm": trainer.best_val,
        "epochs_run": len(trainer.history),
        **test_errors(model, ala2_allatom_topology(), coordinates[TRAIN_FRAMES:], forces[TRAIN_FRAMES:],
                      energies[TRAIN_FRAMES:], TRAIN_FRAMES),  # fmt: skip
        "ase_langevin": ase_dynamics(args.work / "train" / "best.pt", coordinates[0], args.md_ps),
    }
    print(json.dumps(summary, indent=1))
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dataset = ForceDataset(path)
    coordinates, forces = dataset.frames(0)
    as_float64 = [np.asarray(values, dtype=np.float64) for values in (coordinates, forces)]
    return as_float64[0], as_float64[1], dataset.energies(0)


def test_errors(model, topology, positions: np.ndarray, forces: np.ndarray, energies: np.ndarray,
                first: int) -> dict:  # fmt: skip
    """Errors against the labels of frames training never saw (frames ``first``, ``first + 1``, ...
    of ``topology``); energies also up to their mean offset (force matching fixes no zero)."""
    batch = model.pack([topology] * len(positions))
    predicted_energy, predicted = model.energy_and_forces(torch.tensor(positions.reshape(-1, 3)), batch)
    error = predicted.detach().numpy().reshape(forces.shape) - forces
    energy_error = predicted_energy.detach().numpy() - energies
    return {
        "test_frames": f"{first}:{first + len(forces)}",
        "test_force_rmse_kj_per_mol_nm": float(np.sqrt(np.mean(error**2))),
        "test_label_force_rms_kj_per_mol_nm": float(np.sqrt(np.mean(forces**2))),
        "test_energy_rmse_kj_per_mol": float(np.sqrt(np.mean(energy_error**2))),
        "test_energy_rmse_after_offset_kj_per_mol": float(np.std(energy_error)),
        "test_label_energy_std_kj_per_mol": float(np.std(energies)),
    }


def ase_dynamics(
    model_file: Path, positions_nm: np.ndarray, picoseconds: float, symbols: list[str] | None = None
) -> dict:
    """Langevin dynamics with the trained model in ASE: temperature, largest force, finite or not.

    ``symbols``: the elements (default: alanine dipeptide's)."""
    from ase import Atoms, units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from gnnmd.ase import GNNMDCalculator

    # Elements from the topology (a PDB reader would take the atom name "CA" for calcium).
    symbols = symbols or list(ala2_allatom_topology().bead_types)
    atoms = Atoms(symbols=symbols, positions=positions_nm * 10.0)
    atoms.calc = GNNMDCalculator(model=str(model_file))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(0))
    # ASE's own fixcm=True samples NVT wrongly for small molecules (ASE >= 3.28 says so); fix the
    # centre of mass with a constraint instead, which get_temperature counts (3N - 3 degrees of freedom).
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, 0.5 * units.fs, temperature_K=300.0, friction=0.01 / units.fs,
                        fixcm=False, rng=np.random.default_rng(1))  # fmt: skip
    temperatures, largest = [], 0.0
    steps = int(round(picoseconds * 1000 / 0.5))
    for _ in range(steps // 20):
        dynamics.run(20)
        temperatures.append(atoms.get_temperature())
        largest = max(largest, float(np.abs(atoms.get_forces()).max()))
    finite = bool(np.isfinite(atoms.positions).all())
    return {"steps": steps, "timestep_fs": 0.5, "finite": finite,
            "mean_temperature_k": float(np.mean(temperatures[len(temperatures) // 2:])),
            "largest_force_ev_per_angstrom": largest}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
