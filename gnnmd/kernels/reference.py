"""The reference continuous-filter convolution: plain torch, TorchScript-able.

Every other backend is tested against these functions.
"""

from __future__ import annotations

from torch import Tensor, nn


def aggregate_pairs(h: Tensor, filters: Tensor, pairs: Tensor) -> Tensor:
    """m_i = Σ_j W_ij ⊙ h_j over unordered pairs, used in both directions.

    Args:
        h: (N, F) features.
        filters: (E, F) filter of each pair i<j (dimensionless network output).
        pairs: (2, E) int64 (i, j).
    Returns:
        (N, F) aggregated messages.
    """
    i, j = pairs[0], pairs[1]
    aggregated = h.new_zeros(h.shape)
    aggregated.index_add_(0, i, h.index_select(0, j) * filters)
    aggregated.index_add_(0, j, h.index_select(0, i) * filters)
    return aggregated


class ReferenceKernel(nn.Module):
    """Placeholder kernel of a reference block: the block itself runs its filter network."""

    def forward(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        raise RuntimeError("the reference backend evaluates filters in InteractionBlock, not in a kernel")
