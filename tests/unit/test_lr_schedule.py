"""Learning-rate schedules: the cosine's values, its state across a resume and an extension, refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gnnmd.errors import CheckpointError
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.schedule import CosineSchedule, make_schedule
from tests.unit.test_training import CONFIG, student, teacher_dataset

COSINE = dataclasses.replace(CONFIG, lr_schedule="cosine", final_learning_rate=1e-4)


def optimizer(rate: float = 1e-2) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=rate)


def test_cosine_starts_at_the_rate_halves_midway_and_holds_the_final_rate():
    sgd = optimizer()
    schedule = CosineSchedule(sgd, final_rate=1e-4, total_steps=10)
    rates = []
    for _ in range(14):
        schedule.after_step()
        rates.append(sgd.param_groups[0]["lr"])
    assert schedule.rate(0) == pytest.approx(1e-2)
    assert rates[4] == pytest.approx(1e-4 + (1e-2 - 1e-4) * 0.5)  # after 5 of 10 steps
    assert rates[2] == pytest.approx(1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * 0.3)))
    assert all(a > b for a, b in zip(rates[:9], rates[1:10], strict=True))
    assert rates[9:] == [pytest.approx(1e-4)] * 5  # held, not restarted


def test_schedule_refusals():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainingConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="final_learning_rate must be in"):
        TrainingConfig(learning_rate=1e-3, final_learning_rate=1e-2)
    with pytest.raises(ValueError, match="at least one step"):
        CosineSchedule(optimizer(), 0.0, 0)
    with pytest.raises(ValueError, match="not a cosine schedule"):
        CosineSchedule(optimizer(), 0.0, 5).load_state_dict(
            make_schedule(
                optimizer(), "plateau", factor=0.5, patience=2, final_rate=0.0, total_steps=1
            ).state_dict()
        )


def test_trainer_decays_along_the_cosine_and_resumes_exactly(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    whole = Trainer(student(teacher, 5), dataset, COSINE, tmp_path / "whole")
    steps_per_epoch = len(whole.global_batches(0))
    whole.run()
    rates = [row["learning_rate"] for row in whole.history]
    expected = [whole.scheduler.rate(steps_per_epoch * (e + 1)) for e in range(COSINE.epochs)]
    assert rates == pytest.approx(expected)
    assert rates[-1] == pytest.approx(COSINE.final_learning_rate)

    part = Trainer(student(teacher, 5), dataset, dataclasses.replace(COSINE, epochs=1), tmp_path / "part")
    part.run()
    # The one-epoch run fixed its cosine's length at one epoch: resumed with a larger budget, it
    # carries on at the final rate (the cosine is not stretched or restarted).
    extended = Trainer(student(teacher, 99), dataset, COSINE, tmp_path / "part")
    extended.run()
    assert [row["learning_rate"] for row in extended.history[1:]] == pytest.approx([1e-4] * 2)

    half = Trainer(student(teacher, 5), dataset, COSINE, tmp_path / "half")
    half.config = dataclasses.replace(COSINE, epochs=2)  # stop early; the cosine still spans 3 epochs
    half.run()
    resumed = Trainer(student(teacher, 99), dataset, COSINE, tmp_path / "half")
    resumed.run()
    assert [r["val_force_rmse"] for r in resumed.history] == [r["val_force_rmse"] for r in whole.history]
    assert [r["learning_rate"] for r in resumed.history] == rates


def test_resume_with_another_schedule_is_refused(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    Trainer(student(teacher, 5), dataset, dataclasses.replace(CONFIG, epochs=1), tmp_path / "run").run()
    with pytest.raises(CheckpointError, match="lr_schedule"):
        Trainer(
            student(teacher, 5), dataset, dataclasses.replace(CONFIG, lr_schedule="cosine"), tmp_path / "run"
        ).run()
