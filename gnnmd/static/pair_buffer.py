"""Static-shape neighbour lists: a fixed-capacity pair buffer for CUDA graphs.

A CUDA graph replays fixed kernels on fixed buffers, so the number of pairs
cannot change from step to step. Here the Verlet list is copied into a buffer
of fixed capacity, the unused tail is marked invalid, and instead of selecting
the pairs inside the cutoff, every pair outside it (or invalid) gets the
distance ``cutoff`` exactly, where the model's contribution and its gradient
are exactly zero (see :meth:`gnnmd.nn.potential.CGPotential.energy_from_pairs`).
Results equal the dynamic-shape path up to floating-point rounding.

Units: nm.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from gnnmd.neighbors.dense import displacements


class PairBuffer:
    """(2, C) int64 pairs and a (C,) bool validity mask, both updated in place.

    Args:
        capacity: C, at least 1.
        device: where the buffers live.
    """

    def __init__(self, capacity: int, device: torch.device | str) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        # Padding pairs (0, 0) are harmless: their distance is replaced before any square root.
        self.pairs = torch.zeros(2, self.capacity, dtype=torch.int64, device=device)
        self.valid = torch.zeros(self.capacity, dtype=torch.bool, device=device)

    @staticmethod
    def capacity_for(count: int, headroom: float = 1.25) -> int:
        """A capacity for ``count`` pairs with ``headroom`` (a factor) to grow before a re-capture."""
        return max(1, math.ceil(count * headroom))

    def fill(self, pairs: Tensor) -> bool:
        """Copy (2, E) ``pairs`` in; returns False (buffer untouched) if E exceeds the capacity."""
        count = pairs.shape[1]
        if count > self.capacity:
            return False
        self.pairs[:, :count].copy_(pairs)
        self.pairs[:, count:].zero_()
        self.valid[:count].fill_(True)
        self.valid[count:].fill_(False)
        return True


def masked_within_cutoff(
    positions: Tensor,
    pairs: Tensor,
    valid: Tensor,
    graph_index: Tensor,
    cutoff_nm: float,
    box: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Every buffered pair with its distance, set to ``cutoff_nm`` where outside it or invalid.

    Args:
        positions: (N, 3) nm.
        pairs: (2, C) int64.
        valid: (C,) bool.
        graph_index: (N,) int64.
        cutoff_nm: nm.
        box: optional (G, 3, 3) nm periodic box vectors.

    Returns:
        ``(pairs, distances)``: the (2, C) buffer itself and (C,) nm distances,
        differentiable with respect to ``positions`` (zero gradient for the
        pairs that were set to the cutoff).
    """
    vectors = displacements(positions, pairs, graph_index, box)
    squared = (vectors * vectors).sum(dim=1)
    limit = cutoff_nm * cutoff_nm
    inside = valid & (squared < limit)
    # where() before the square root: the unused branch gets a zero gradient, never 0/0.
    squared = torch.where(inside, squared, torch.full_like(squared, limit))
    distances = torch.sqrt(squared)
    return pairs, torch.where(inside, distances, torch.full_like(distances, cutoff_nm))
