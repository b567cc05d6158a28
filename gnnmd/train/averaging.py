"""An exponential moving average of a network's weights (Polyak averaging) for validation and checkpoints.

Force matching on noisy reference forces leaves the optimiser's iterates wandering around
the minimum: from one epoch to the next the weights, and with them the model's free
energy, move by more than training improves them. The average of the recent iterates is a
better estimate of the minimum. Training steps the raw weights; validation, the free-energy
score and ``best.pt`` use the average (:meth:`WeightAverage.applied`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn


class WeightAverage:
    """w̄ ← decay · w̄ + (1 − decay) · w after every optimiser step, over ``module``'s parameters.

    With decay d the average spans about 1 / (1 − d) steps.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.parameters = [p for p in module.parameters()]
        self.average = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimiser step)."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self.parameters], 1.0 - self.decay)

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """Within the block the module holds the averaged weights; the raw ones come back after."""
        raw = [p.detach().clone() for p in self.parameters]
        for parameter, average in zip(self.parameters, self.average, strict=True):
            parameter.copy_(average)
        try:
            yield
        finally:
            for parameter, value in zip(self.parameters, raw, strict=True):
                parameter.copy_(value)

    def state(self) -> list[Tensor]:
        return [a.clone() for a in self.average]

    def load(self, state: list[Tensor]) -> None:
        if len(state) != len(self.average):
            raise ValueError(f"a weight average of {len(state)} tensors for {len(self.average)} parameters")
        for average, saved in zip(self.average, state, strict=True):
            average.copy_(saved)
