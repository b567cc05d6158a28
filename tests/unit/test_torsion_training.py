"""The torsional term of the training loss: its sums, its effect, its records and its refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from gnnmd.data.dataset import DatasetError, ForceDataset, write_molecule
from gnnmd.models import load_model
from gnnmd.topology import custom_topology
from gnnmd.torsions import pack_torsions, torsional_forces
from gnnmd.train import ErrorSums, Trainer, TrainingConfig
from tests.unit.test_training import CONFIG, student, teacher_dataset

TORSIONS_ONLY = TrainingConfig(**{**CONFIG.__dict__, "force_weight": 0.0, "torsion_weight": 1.0, "epochs": 4})


def test_validation_sums_are_the_torsional_force_errors_of_the_held_out_frames(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    model = student(teacher, 5)
    trainer = Trainer(model, dataset, CONFIG, tmp_path / "run")
    sums = trainer.validate()
    x, f = dataset.frames(0, np.sort(trainer.val_frames))
    topologies = [chignolin.topology] * len(x)
    positions = torch.tensor(x.reshape(-1, 3), dtype=torch.float64)
    _, forces = model.energy_and_forces(positions, model.pack(topologies))
    force_error = forces.detach() - torch.tensor(f.reshape(-1, 3), dtype=torch.float64)
    error = torsional_forces(positions, force_error, pack_torsions(topologies))
    assert sums.torsion_rmse == pytest.approx(float(error.pow(2).mean().sqrt()), rel=1e-10)
    assert sums.torsion_rmse > 0 and sums.energy_rmse is None
    no_torsions = sums.sums.clone()
    no_torsions[4:] = 0
    assert ErrorSums(no_torsions).torsion_rmse is None
    with pytest.raises(ValueError, match="error sums hold"):
        ErrorSums(sums.sums[:4])


def test_training_on_torsional_forces_alone_lowers_their_error_and_is_recorded(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    trainer = Trainer(student(teacher, 5), dataset, TORSIONS_ONLY, tmp_path / "run")
    before = trainer.validate()
    history = trainer.run()
    assert history[-1]["val_torsion_rmse"] < 0.8 * before.torsion_rmse
    assert history[-1]["val_loss"] == pytest.approx(history[-1]["val_torsion_rmse"] ** 2)
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[-1]["train_torsion_rmse"]) > 0
    training = load_model(tmp_path / "run" / "best.pt").metadata["training"]
    assert training["config"]["torsion_weight"] == 1.0
    assert training["val_torsion_rmse_kj_per_mol_rad"] == min(row["val_torsion_rmse"] for row in history)


def test_a_resume_with_another_torsion_weight_is_refused(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    one_epoch = TrainingConfig(**{**CONFIG.__dict__, "epochs": 1})
    Trainer(student(teacher, 5), dataset, one_epoch, tmp_path / "r").run()
    with pytest.raises(ValueError, match="'torsion_weight' is 0.0 but this run has 0.5"):
        Trainer(student(teacher, 5), dataset, TrainingConfig(**{**CONFIG.__dict__, "torsion_weight": 0.5}),
                tmp_path / "r").run()  # fmt: skip


def test_molecules_without_torsions_and_bad_weights_are_refused(tmp_path, chignolin):
    _, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    three = custom_topology("tri", ["ALA.N", "ALA.CA", "ALA.C"], [14.0, 12.0, 12.0], [(0, 1), (1, 2)])
    x = np.random.default_rng(0).normal(0, 0.15, (8, 3, 3))
    write_molecule(tmp_path / "tri.h5", three, x, np.zeros_like(x))
    refused = r"torsion_weight is 1.0 but molecule\(s\) \['tri'\] have no torsion"
    with pytest.raises(DatasetError, match=refused):
        Trainer(student(teacher, 5), ForceDataset(tmp_path / "tri.h5"), TORSIONS_ONLY, tmp_path / "run")
    with pytest.raises(ValueError, match="torsion_weight -1.0 must be >= 0"):
        TrainingConfig(torsion_weight=-1.0)
    with pytest.raises(ValueError, match="not all zero"):
        TrainingConfig(force_weight=0.0)
