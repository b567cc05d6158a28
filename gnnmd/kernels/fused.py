"""Fused exact-filter convolution: radial basis, filter network and message passing in one pass.

The filter network is evaluated exactly (as in ``reference``) but no edges ×
basis or edges × filters tensor is kept:

- CUDA: Triton kernels over destination-sorted (CSR) edges, one program per
  bead, the basis and both filter layers computed in registers and reduced
  into the bead's message without atomics; the backward pass recomputes them
  (see :mod:`gnnmd.kernels.triton_kernels`).
- CPU: the pairs in chunks small enough to stay in cache; the backward pass
  recomputes each chunk's filters (activation checkpointing per chunk).
- TorchScript: the reference arithmetic.

With ``weight_dtype`` (the ``fused16`` backend) the filter layers hold
channel-wise 16-bit weights (:mod:`gnnmd.kernels.quantize`).

Units: distances in nm; filters dimensionless.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gnnmd.kernels.filter_function import FilterFunction
from gnnmd.kernels.filter_spec import FilterRecord
from gnnmd.kernels.first_derivative import first_derivative_only
from gnnmd.kernels.reference import aggregate_pairs

#: Pairs per CPU chunk (measured best of 1024-32768 on 2 cores: 8192, 4 MiB of float32 filters).
CPU_CHUNK_PAIRS = 8192


class FusedKernel(nn.Module):
    """Σ_j W(r_ij) ⊙ h_j with the exact filter network, fused (see module docstring).

    Args:
        record: the block's filter (:func:`gnnmd.nn.filter_record.filter_record`).
        weight_dtype: None for float weights, torch.bfloat16 or torch.float16 for 16-bit ones.
    """

    def __init__(self, record: FilterRecord, weight_dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.filter = FilterFunction(record, weight_dtype)
        self.chunk_pairs = CPU_CHUNK_PAIRS

    def filters(self, distances: Tensor) -> Tensor:
        """(E, F) W(r) of (E,) distances in nm."""
        return self.filter(distances)

    def forward(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """(N, F) messages from (N, F) features, (2, E) pairs i<j and (E,) distances in nm."""
        if torch.jit.is_scripting():
            return aggregate_pairs(h, self.filters(distances), pairs)
        return self._fast(h, pairs, distances)

    @torch.jit.unused
    def _fast(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        if h.is_cuda:
            from gnnmd.kernels import triton_kernels

            if triton_kernels.available() and h.dtype == torch.float32:
                return triton_kernels.fused_conv(h, pairs, distances, self)
        return _ChunkedConv.apply(h, pairs, distances, self)


class _ChunkedConv(torch.autograd.Function):
    """Chunked forward; the backward pass recomputes each chunk's filters and differentiates them."""

    @staticmethod
    def forward(ctx, h: Tensor, pairs: Tensor, distances: Tensor, kernel: FusedKernel) -> Tensor:
        ctx.save_for_backward(h, pairs, distances)
        ctx.kernel = kernel
        out = h.new_zeros(h.shape)
        with torch.no_grad():
            for start in range(0, distances.shape[0], kernel.chunk_pairs):
                i, j = pairs[:, start : start + kernel.chunk_pairs]
                filters = kernel.filters(distances[start : start + kernel.chunk_pairs])
                out.index_add_(0, i, h.index_select(0, j) * filters)
                out.index_add_(0, j, h.index_select(0, i) * filters)
        return out

    @staticmethod
    @first_derivative_only("fused (chunked CPU)")
    def backward(ctx, grad_out: Tensor):
        h, pairs, distances = ctx.saved_tensors
        kernel: FusedKernel = ctx.kernel
        grad_h = h.new_zeros(h.shape)
        grad_r = distances.new_empty(distances.shape)
        for start in range(0, distances.shape[0], kernel.chunk_pairs):
            stop = start + kernel.chunk_pairs
            i, j = pairs[:, start:stop]
            with torch.enable_grad():
                r = distances[start:stop].detach().requires_grad_(True)
                filters = kernel.filters(r)
            g_i, g_j = grad_out.index_select(0, i), grad_out.index_select(0, j)
            h_i, h_j = h.index_select(0, i), h.index_select(0, j)
            grad_h.index_add_(0, j, g_i * filters.detach())
            grad_h.index_add_(0, i, g_j * filters.detach())
            (grad_r[start:stop],) = torch.autograd.grad(filters, r, grad_outputs=g_i * h_j + g_j * h_i)
        return grad_h, None, grad_r, None
