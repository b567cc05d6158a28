"""Energy + force training against force matching alone, on all-atom data with energies.

    gnnmd data allatom chignolin --resolution atom --ns 0.08 --frame-interval-ps 0.2 \\
        --temperature-k 340 --seed 3 -o out/chignolin-atoms/chignolin-atoms-340K.h5
    python benchmarks/energy_training.py out/chignolin-atoms/chignolin-atoms-340K.h5 \\
        --energy-weights 0,1 --epochs 30 --json out/chignolin-atoms/energy_training.json

The last ``--test-fraction`` of the trajectory (a contiguous block that training
never sees) is the test set; the frames before it are written to a training
file, of which the Trainer holds out 10% for validation. For every energy
weight the same network (``--model-config``) is trained from the same seed.
Reported on the test frames: force RMSE (kJ/mol/nm), the energy RMSE of the
model against the reference (kJ/mol) and the energy RMSE after the best
constant shift. A force-only model has no energy zero of its own, so the
shifted figure is the fair comparison of energy *differences*; the absolute
one shows what an ASE user reading ``get_potential_energy`` would see.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from gnnmd.cli.train import potential_config
from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.models import load_model
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.setup import model_for_dataset

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset with energies (data allatom --resolution atom)")
    parser.add_argument("--molecule", help="molecule in the file (default: the first with energies)")
    parser.add_argument("--model-config", default=str(REPO / "scripts" / "ala2_allatom_config.json"))
    parser.add_argument("--energy-weights", default="0,1", help="comma-separated energy weights")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--temperature-k", type=float, default=340.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, help="scratch folder (default: beside the data)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work or args.data.with_name(args.data.stem + "_energy_training")
    work.mkdir(parents=True, exist_ok=True)
    train_file, (positions, forces, energies), topology = split(args, work)
    report = {"data": str(args.data), "molecule": topology.name, "atoms": topology.n_beads,
              "train_frames": len(ForceDataset(train_file)), "test_frames": len(positions),
              "epochs": args.epochs, "model_config": args.model_config, "runs": []}  # fmt: skip
    for weight in (float(w) for w in args.energy_weights.split(",")):
        output = work / f"energy_weight_{weight:g}"
        shutil.rmtree(output, ignore_errors=True)  # a fresh run, not a resume of an earlier one
        dataset = ForceDataset(train_file)
        model = model_for_dataset(dataset, potential_config(args.model_config), args.temperature_k, seed=0)
        config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0, energy_weight=weight)
        trainer = Trainer(model, dataset, config, output)
        trainer.run()
        scores = test_errors(load_model(output / "best.pt").double(), topology, positions, forces, energies)
        seconds = sum(row["seconds"] for row in trainer.history)
        row = {"energy_weight": weight, "epochs_run": trainer.epoch, **scores,
               "val_force_rmse": trainer.best_val, "seconds": seconds}  # fmt: skip
        report["runs"].append(row)
        print(json.dumps(row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def split(args: argparse.Namespace, work: Path) -> tuple[Path, tuple, object]:
    """Write the leading frames to a training file; return it, the test block and the topology."""
    source = ForceDataset(args.data)
    choices = [m for m, has in zip(source.molecules, source.has_energies, strict=True) if has]
    name = args.molecule or (choices[0] if choices else None)
    if name not in choices:
        raise SystemExit(f"{args.data}: no molecule with energies named {name!r} (with energies: {choices})")
    molecule = source.molecules.index(name)
    positions, forces = source.frames(molecule)
    energies = source.energies(molecule)
    first_test = int(round(len(positions) * (1.0 - args.test_fraction)))
    train_file = work / "train.h5"
    train_file.unlink(missing_ok=True)
    topology = source.topologies[molecule]
    write_molecule(train_file, topology, positions[:first_test], forces[:first_test], energies[:first_test],
                   description=f"frames 0:{first_test} of {args.data}")  # fmt: skip
    test = (positions[first_test:], forces[first_test:], energies[first_test:])
    return train_file, test, topology


def test_errors(model, topology, positions: np.ndarray, forces: np.ndarray, energies: np.ndarray) -> dict:
    """Force RMSE kJ/mol/nm and energy RMSE kJ/mol (absolute and after the best constant shift)."""
    predicted_e, predicted_f = [], []
    for start in range(0, len(positions), 16):
        chunk = positions[start : start + 16]
        batch = model.pack([topology] * len(chunk))
        x = torch.tensor(chunk.reshape(-1, 3), dtype=torch.float64)
        e, f = model.energy_and_forces(x, batch)
        predicted_e.append(e.numpy())
        predicted_f.append(f.numpy().reshape(chunk.shape))
    error_e = np.concatenate(predicted_e) - energies
    error_f = np.concatenate(predicted_f) - forces
    return {
        "test_force_rmse": float(np.sqrt(np.mean(error_f**2))),
        "test_energy_rmse": float(np.sqrt(np.mean(error_e**2))),
        "test_energy_rmse_shifted": float(np.std(error_e)),
        "test_energy_std": float(np.std(energies)),
        "test_force_rms": float(np.sqrt(np.mean(forces**2))),
    }


if __name__ == "__main__":
    raise SystemExit(main())
