"""Train and ship the ``ala2-allatom`` model: an all-atom SchNet potential of alanine dipeptide.

    python scripts/build_ala2_allatom.py [--work out/ala2-allatom] [--epochs 150]
    python scripts/build_ala2_allatom.py --skip-training    # report on the shipped model only

Data: the shipped proteka example frames (gnnmd/shipped/reference_data/ala2_allatom; Å and
kcal/mol/Å, converted to nm and kJ/mol/nm on import). The trajectory's first
1800 frames are the training data; the Trainer holds out a random 10% of them
for validation (learning-rate schedule, early stopping, choice of the best
epoch). The last 200 frames are a test set that training never sees; the
force error reported in the checkpoint metadata is measured on them.

Model: element types (C, H, N, O), no priors, every pair inside 0.5 nm
(scripts/ala2_allatom_config.json), trained by force matching with
gnnmd.train.Trainer on one CPU thread (reproducible reductions). The result is
written to gnnmd/shipped/models/ala2-allatom.pt and the continuity reference
values are re-recorded. The report (also written to WORK/summary.json) adds
the force error of amber14 in vacuum on the same test frames, as a yardstick
for the solvent noise in the reference forces.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from gnnmd.data.ala2_allatom import PDB_FILE, ala2_allatom_frames, ala2_allatom_topology, import_ala2_allatom
from gnnmd.data.dataset import ForceDataset
from gnnmd.models import PRETRAINED_DIR, load_model, save_checkpoint
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.setup import model_for_dataset

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "scripts" / "ala2_allatom_config.json"
NAME = "ala2-allatom"
#: Frames [0, TRAIN_FRAMES) train (and validate); the rest of the trajectory is the test set.
TRAIN_FRAMES = 1800
DATA_PROVENANCE = (
    "ClementiGroup/proteka @db2ffd8 : examples/example_dataset_files/ala2_all_atom.npz (MIT); "
    "Å and kcal/mol/Å, converted to nm and kJ/mol/nm"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / NAME, help="scratch folder")
    parser.add_argument("--epochs", type=int, default=150, help="maximum epochs (default 150)")
    parser.add_argument(
        "--no-ship", action="store_true", help="train and report; leave the shipped file alone"
    )
    parser.add_argument("--skip-training", action="store_true", help="only report on the shipped model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # reproducible reductions; the model is small
    args.work.mkdir(parents=True, exist_ok=True)
    if args.skip_training:
        model = load_model(NAME)
        validation = model.metadata["training"]["val_force_rmse_kj_per_mol_nm"]
    else:
        data = args.work / "ala2_allatom_train.h5"
        if not data.is_file():
            import_ala2_allatom(data, slice(0, TRAIN_FRAMES))
        validation = train(data, args.work, args.epochs).best_val
        model = load_model(args.work / "train" / "best.pt")
    test = test_errors(copy.deepcopy(model).double())
    summary = {"validation_force_rmse_kj_per_mol_nm": validation, **test}
    summary["amber14_vacuum_test_force_rmse_kj_per_mol_nm"] = amber_baseline()
    print(json.dumps(summary, indent=1))
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if not (args.no_ship or args.skip_training):
        ship(model, test, argv)
    return 0


def train(
    data: Path, work: Path, epochs: int, energy_weight: float = 0.0, metadata: dict | None = None
) -> Trainer:
    """The all-atom alanine-dipeptide training run (also scripts/build_ala2_xtb.py's, with energies)."""
    config = PotentialConfig.from_dict(json.loads(CONFIG.read_text()))
    dataset = ForceDataset(data)
    model = model_for_dataset(dataset, config, temperature_k=300.0, seed=0)
    settings = TrainingConfig(
        epochs=epochs, batch_size=32, learning_rate=1e-3, lr_decay_factor=0.5, lr_patience=4,
        early_stopping_patience=12, validation_fraction=0.1, seed=0, energy_weight=energy_weight,
    )  # fmt: skip
    metadata = metadata or {"name": NAME, "description": "all-atom alanine dipeptide (training run)"}
    trainer = Trainer(model, dataset, settings, work / "train", "cpu", metadata)
    for row in trainer.run(resume=True):
        energy = f", energy {row['val_energy_rmse']:.2f} kJ/mol" if energy_weight else ""
        rate = row["learning_rate"]
        print(f"epoch {row['epoch']:3d}  train {row['train_force_rmse']:.1f}  "
              f"val {row['val_force_rmse']:.1f} kJ/mol/nm{energy}  lr {rate:.2g}")  # fmt: skip
    return trainer


def test_errors(model: CGPotential) -> dict:
    """Force RMSE of ``model`` (float64) on the test frames, next to the force RMS of those frames."""
    positions, forces = ala2_allatom_frames()
    positions, forces = positions[TRAIN_FRAMES:], forces[TRAIN_FRAMES:]
    batch = model.pack([ala2_allatom_topology()] * len(positions))
    _, predicted = model.energy_and_forces(torch.tensor(positions.reshape(-1, 3)), batch)
    error = predicted.numpy().reshape(forces.shape) - forces
    return {
        "test_frames": f"{TRAIN_FRAMES}:{TRAIN_FRAMES + len(forces)}",
        "test_force_rmse_kj_per_mol_nm": float(np.sqrt(np.mean(error**2))),
        "test_force_rms_kj_per_mol_nm": float(np.sqrt(np.mean(forces**2))),
        "test_force_mae_kj_per_mol_nm": float(np.mean(np.abs(error))),
    }


def amber_baseline() -> float:
    """Force RMSE (kJ/mol/nm) of amber14 in vacuum (OpenMM) against the test frames: a yardstick.

    The reference forces include instantaneous solvent forces that no function of
    the solute's coordinates can predict; a classical force field without solvent
    shows how large that part is.
    """
    import openmm
    import openmm.app as app
    from openmm import unit

    positions, forces = (array[TRAIN_FRAMES:] for array in ala2_allatom_frames())
    topology = app.PDBFile(str(PDB_FILE)).topology
    system = app.ForceField("amber14-all.xml").createSystem(topology, nonbondedMethod=app.NoCutoff)
    platform = openmm.Platform.getPlatformByName("Reference")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    amber = []
    for frame in positions:
        context.setPositions(frame)  # nm
        state = context.getState(getForces=True)
        amber.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return float(np.sqrt(np.mean((np.array(amber) - forces) ** 2)))


GOOD_FOR = (
    "all-atom alanine dipeptide in ASE or OpenMM with X-H bonds constrained; test force RMSE about "
    "120 kJ/mol/nm (benchmarks/RESULTS.md)"
)


def ship(model: CGPotential, test: dict, argv: list[str] | None) -> None:
    """Write ``model`` as gnnmd/shipped/models/ala2-allatom.pt and re-record the continuity values."""
    arguments = sys.argv[1:] if argv is None else argv
    metadata = dict(model.metadata)
    metadata.update(
        name=NAME,
        description=(
            "all-atom alanine dipeptide (22 atoms, elements C/H/N/O), no priors, 0.5 nm cutoff; "
            "force-matched to explicit-solvent AMBER frames with X-H bonds constrained: "
            "use it with X-H bond constraints (gnnmd.ase.hydrogen_bond_constraints)"
        ),
        good_for=GOOD_FOR,
        kind="all-atom",
        data_provenance=DATA_PROVENANCE,
        training_command=shlex.join(["python", "scripts/build_ala2_allatom.py", *arguments]),
        built_by="scripts/build_ala2_allatom.py",
        test=test,
    )
    # The file the model was trained on, by how to rebuild it rather than by this machine's path.
    metadata["training"]["dataset"] = (
        f"import_ala2_allatom(path, slice(0, {TRAIN_FRAMES})) (gnnmd.data.ala2_allatom)"
    )
    save_checkpoint(model, PRETRAINED_DIR / f"{NAME}.pt", metadata)
    # The continuity tests compare every shipped model with recorded values: record the new one.
    recorder = REPO / "scripts" / "build_shipped_models.py"
    subprocess.run([sys.executable, str(recorder), "--record"], check=True)


if __name__ == "__main__":
    sys.exit(main())
