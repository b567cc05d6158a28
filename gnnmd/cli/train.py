"""``gnnmd train``: force matching on a gnnmd dataset, on one process or under torchrun.

gnnmd train --data ala2.h5 -o runs/ala2 --model-config default --temperature-k 300
torchrun --nproc-per-node 2 $(which gnnmd) train --data ala2.h5 -o runs/ala2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAMED_CONFIGS = ("default", "cgschnet-benchmark")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="gnnmd dataset (.h5, see `gnnmd data`)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="output folder (state, best.pt, metrics)"
    )
    parser.add_argument(
        "--model-config", default="default",
        help=f"network hyperparameters: {' or '.join(NAMED_CONFIGS)}, or a JSON file of PotentialConfig keys",
    )  # fmt: skip
    parser.add_argument(
        "--temperature-k", type=float, default=300.0, help="temperature of the data, K (default 300)"
    )
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="frames per step over all ranks (default 64)"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)"
    )
    parser.add_argument("--max-frames", type=int, help="use a random subset of this many frames")
    parser.add_argument(
        "--force-weight", type=float, default=1.0, help="weight of the force MSE, (kJ/mol/nm)² (default 1)"
    )
    parser.add_argument(
        "--energy-weight", type=float, default=0.0,
        help="weight of the per-frame energy MSE, (kJ/mol)² (default 0: forces only; data need energies)",
    )  # fmt: skip
    parser.add_argument(
        "--torsion-weight", type=float, default=0.0,
        help="weight of the MSE of the generalized forces along the torsions (rotations about the "
        "bonds at the centre of dihedrals), (kJ/mol/rad)²: the force error that sets the free energy "
        "along them (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--select-by", choices=("force", "free_energy"), default="force",
        help="what picks the best epoch: validation force loss (default), or free_energy: every epoch "
        "short simulations from held-out frames, JS divergence of the main observable (φ/ψ, RMSD × Q) "
        "to the held-out frames",
    )  # fmt: skip
    parser.add_argument(
        "--selection-replicas", type=int, default=64, help="replicas of each free-energy score (64)"
    )
    parser.add_argument(
        "--selection-steps", type=int, default=6000,
        help="2 fs steps per replica of each free-energy score, a sixth of them equilibration (6000)",
    )  # fmt: skip
    parser.add_argument(
        "--weight-average-decay", type=float, default=0.0,
        help="validate, select and save an exponential moving average of the weights with this decay "
        "per step (e.g. 0.999: about the last 1000 steps); 0 (default): the weights themselves",
    )  # fmt: skip
    parser.add_argument(
        "--lr-schedule", choices=("plateau", "cosine"), default="plateau",
        help="plateau (default): halve the rate when the validation loss stalls for 2 epochs; cosine: "
        "lower it every step along a half cosine to --final-learning-rate over --epochs",
    )  # fmt: skip
    parser.add_argument(
        "--final-learning-rate", type=float, default=1e-5,
        help="where the cosine schedule ends (default 1e-5)",
    )  # fmt: skip
    parser.add_argument(
        "--refine-dihedral-priors", type=int, default=0, metavar="ITERATIONS",
        help="refine the dihedral priors by this many iterations of Boltzmann inversion against "
        "simulations of the priors alone, before the first epoch (0: off; one process: under "
        "torchrun, start without it, then resume)",
    )  # fmt: skip
    parser.add_argument(
        "--refine-replicas", type=int, default=256, help="replicas of each refinement simulation (256)"
    )
    parser.add_argument(
        "--refine-steps", type=int, default=20000, help="2 fs steps of each refinement replica (20000)"
    )
    parser.add_argument(
        "--patience", type=int, default=6,
        help="stop after this many epochs without improvement of the selection criterion (6)",
    )  # fmt: skip
    parser.add_argument(
        "--validation-fraction", type=float, default=0.1,
        help="share of frames (of trajectories, when the data record them) held out (default 0.1)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seeds split, frame order and initial weights")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--fresh", action="store_true", help="ignore an existing train_state.pt in the output folder"
    )


def potential_config(name_or_path: str):
    """A named configuration or one read from a JSON file."""
    from gnnmd.models import BENCHMARK_CONFIG, DEFAULT_CONFIG
    from gnnmd.nn.potential import PotentialConfig

    named = {"default": DEFAULT_CONFIG, "cgschnet-benchmark": BENCHMARK_CONFIG}
    if name_or_path in named:
        return named[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"--model-config {name_or_path!r} is neither {NAMED_CONFIGS} nor a JSON file")
    try:
        values = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"--model-config {path}: not valid JSON ({error})") from None
    return PotentialConfig.from_dict(values)


def free_energy_scorer(config, dataset, temperature_k: float):
    """The scorer factory of ``--select-by free_energy`` (None for force selection)."""
    if config.select_by != "free_energy":
        return None
    from gnnmd.analysis.selection import HeldOutFreeEnergy, selection_settings

    replicas, steps = config.selection_replicas, config.selection_steps
    settings = selection_settings(replicas, steps, temperature_k, config.seed)
    return lambda held_out: HeldOutFreeEnergy(dataset, held_out, settings)


def prior_refinement(dataset, args: argparse.Namespace):
    """(its settings record, the Trainer's ``prepare``) of ``--refine-dihedral-priors``, or (None, None)."""
    if not args.refine_dihedral_priors:
        return None, None
    import dataclasses

    from gnnmd.train.prior_refinement import RefinementSettings, refine_dihedral_priors
    from gnnmd.train.setup import REFINE_FRAMES, prior_structures

    settings = RefinementSettings(
        iterations=args.refine_dihedral_priors, replicas=args.refine_replicas, steps=args.refine_steps,
        seed=args.seed,
    )  # fmt: skip
    record = {"settings": dataclasses.asdict(settings)}

    def prepare(model) -> dict:
        history = refine_dihedral_priors(
            model, prior_structures(dataset, REFINE_FRAMES), args.temperature_k, settings
        )
        js = [{str(key): value for key, value in step.items()} for step in history]
        return {"prior_refinement": {**record, "dihedral_js_before_each_iteration": js}}

    return record, prepare


def run(args: argparse.Namespace) -> int:
    from gnnmd.data.dataset import ForceDataset
    from gnnmd.distributed import initialize, local_device
    from gnnmd.train import Trainer, TrainingConfig
    from gnnmd.train.setup import model_for_dataset

    config = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        seed=args.seed, max_frames=args.max_frames, force_weight=args.force_weight,
        energy_weight=args.energy_weight, torsion_weight=args.torsion_weight, select_by=args.select_by,
        selection_replicas=args.selection_replicas, selection_steps=args.selection_steps,
        weight_average_decay=args.weight_average_decay, early_stopping_patience=args.patience,
        validation_fraction=args.validation_fraction, lr_schedule=args.lr_schedule,
        final_learning_rate=args.final_learning_rate,
    )  # fmt: skip
    dataset = ForceDataset(args.data)
    model = model_for_dataset(dataset, potential_config(args.model_config), args.temperature_k, args.seed)
    metadata = {
        "name": args.output.name,
        "description": f"force matching on {args.data.name} ({', '.join(dataset.molecules)})",
        "temperature_k": args.temperature_k,
    }
    refinement, prepare = prior_refinement(dataset, args)
    if refinement is not None:
        metadata["prior_refinement"] = refinement
    scorer_for = free_energy_scorer(config, dataset, args.temperature_k)
    initialize(local_device(args.device))  # joins torchrun's process group, if launched so
    trainer = Trainer(model, dataset, config, args.output, args.device, metadata, scorer_for, prepare)
    history = trainer.run(resume=not args.fresh)
    if trainer.rank == 0:
        for row in history:
            energy = ""
            if row.get("val_energy_rmse") is not None:
                energies = row["train_energy_rmse"], row["val_energy_rmse"]
                energy = "  energy train {:.2f}  val {:.2f} kJ/mol".format(*energies)
            score = row.get("val_free_energy_js")
            score = "" if score is None else f"  held-out free-energy JS {score:.4f}"
            print(
                f"epoch {row['epoch']:3d}  train {row['train_force_rmse']:.2f}  "
                f"val {row['val_force_rmse']:.2f} kJ/mol/nm{energy}{score}  lr {row['learning_rate']:.2g}"
            )
        if not trainer.best_written:
            print(f"no epoch improved on the validation loss; no model written to {args.output}")
            return 0
        energy = "" if trainer.best_energy is None else f", energy RMSE {trainer.best_energy:.3f} kJ/mol"
        print(
            f"best validation force RMSE {trainer.best_val:.3f} kJ/mol/nm{energy}; "
            f"model: {args.output / 'best.pt'}"
        )
    return 0
