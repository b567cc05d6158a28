"""The weight average: its arithmetic, the weights it lends to validation and best.pt, and exact resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gnnmd.models import read_checkpoint
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.averaging import WeightAverage
from tests.unit.test_training import CONFIG, student, teacher_dataset


def test_average_follows_the_weights_and_lends_them_for_a_block():
    layer = torch.nn.Linear(2, 1)
    start = [p.detach().clone() for p in layer.parameters()]
    average = WeightAverage(layer, decay=0.75)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(4.0)
    average.update()  # 0.75 * start + 0.25 * (start + 4) = start + 1
    for a, s in zip(average.average, start, strict=True):
        torch.testing.assert_close(a, s + 1.0)
    with average.applied():
        torch.testing.assert_close(layer.weight, start[0] + 1.0)
        layer(torch.ones(1, 2)).sum().backward()  # gradients still flow inside the block
        assert layer.weight.grad is not None
    torch.testing.assert_close(layer.weight, start[0] + 4.0)  # the raw weights are back
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(layer, 1.0)
    with pytest.raises(ValueError, match="weight_average_decay"):
        TrainingConfig(weight_average_decay=-0.1)


def test_best_checkpoint_holds_the_average_and_resume_is_exact(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    config = dataclasses.replace(CONFIG, weight_average_decay=0.9)
    whole = Trainer(student(teacher, 5), dataset, config, tmp_path / "whole")
    whole.run()
    checkpoint = read_checkpoint(tmp_path / "whole" / "best.pt")
    assert checkpoint["metadata"]["training"]["epoch"] == config.epochs  # the loss fell every epoch
    parameters = list(whole.model.network.named_parameters())
    for (name, _), average in zip(parameters, whole.average.average, strict=True):
        assert torch.equal(checkpoint["network"][name], average)  # best.pt holds the average ...
    assert any(
        not torch.equal(checkpoint["network"][name], p) for name, p in parameters
    )  # ... not the weights
    part = Trainer(student(teacher, 5), dataset, dataclasses.replace(config, epochs=2), tmp_path / "part")
    part.run()
    resumed = Trainer(student(teacher, 99), dataset, config, tmp_path / "part")
    resumed.run()
    for a, b in zip(whole.average.average, resumed.average.average, strict=True):
        assert torch.equal(a, b)
    assert [r["val_force_rmse"] for r in resumed.history] == [r["val_force_rmse"] for r in whole.history]
