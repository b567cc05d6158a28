"""Learning-rate schedules of the trainer: halve on a plateau, or decay along a half cosine.

``plateau`` (the default) multiplies the rate by ``lr_decay_factor`` when the validation
loss has not improved for ``lr_patience`` epochs. On noisy reference forces (coarse-grained
data) the force loss flattens within a few epochs while the weights keep wandering at the
full rate, and with them the model's free energy. ``cosine`` lowers the rate every optimiser
step from ``learning_rate`` to ``final_learning_rate`` along a half cosine over the run's
epochs, then holds it: the last epochs take small steps, and a weight average over them
(:mod:`gnnmd.train.averaging`) estimates the minimum rather than a point of the walk.

The cosine's length is fixed when a run starts and kept in the training state, so a run
extended by ``--epochs`` carries on at the final rate instead of restarting the cosine.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

SCHEDULES = ("plateau", "cosine")


class LearningRateSchedule(Protocol):
    """What the trainer calls: after every optimiser step, after every epoch, and to save/restore."""

    def after_step(self) -> None: ...

    def after_epoch(self, validation_loss: float) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class PlateauSchedule:
    """torch's ReduceLROnPlateau on the validation loss (its state dict is the training state's)."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=factor, patience=patience
        )

    def after_step(self) -> None:
        pass

    def after_epoch(self, validation_loss: float) -> None:
        self.scheduler.step(validation_loss)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


class CosineSchedule:
    """lr(s) = final + (initial − final) · ½ (1 + cos(π · min(s, S) / S)) after s of S optimiser steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, final_rate: float, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"a cosine schedule needs at least one step, got {total_steps}")
        self.optimizer = optimizer
        self.initial_rate = float(optimizer.param_groups[0]["lr"])
        if not 0.0 <= final_rate <= self.initial_rate:
            raise ValueError(
                f"final_learning_rate must be in [0, learning_rate = {self.initial_rate}], got {final_rate}"
            )
        self.final_rate = final_rate
        self.total_steps = total_steps
        self.steps = 0

    def rate(self, steps: int) -> float:
        progress = min(steps, self.total_steps) / self.total_steps
        return self.final_rate + (self.initial_rate - self.final_rate) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )

    def after_step(self) -> None:
        self.steps += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(self.steps)

    def after_epoch(self, validation_loss: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {
            "schedule": "cosine",
            "steps": self.steps,
            "total_steps": self.total_steps,
            "initial_rate": self.initial_rate,
            "final_rate": self.final_rate,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("schedule") != "cosine":
            raise ValueError(f"not a cosine schedule's state: {sorted(state)}")
        self.steps, self.total_steps = int(state["steps"]), int(state["total_steps"])
        self.initial_rate, self.final_rate = float(state["initial_rate"]), float(state["final_rate"])


def make_schedule(
    optimizer: torch.optim.Optimizer,
    kind: str,
    *,
    factor: float,
    patience: int,
    final_rate: float,
    total_steps: int,
) -> LearningRateSchedule:
    """The schedule ``kind`` ("plateau" or "cosine") over ``optimizer``."""
    if kind == "plateau":
        return PlateauSchedule(optimizer, factor, patience)
    if kind == "cosine":
        return CosineSchedule(optimizer, final_rate, total_steps)
    raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {kind!r}")
