# ruff: noqa: N803  (Triton compile-time constants are upper case by convention)
"""What the Triton ops share: the import guard, the CSR layout of directed edges, one edge tile,
the launcher and the autograd formula of a row kernel with its per-edge distance gradients.

Units: distances in nm; filters dimensionless.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Tuple

import torch
from torch import Tensor

from gnnmd.kernels.first_derivative import first_derivative_only

try:
    import triton
    import triton.language as tl
    from torch.library import wrap_triton
except ImportError:  # pragma: no cover - triton ships with torch on Linux
    triton = None

#: Directed edges per tile of a program.
BLOCK_E = 32


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _patch_interpreter() -> None:
    """Triton 3.5's interpreter turns a loaded scalar into an int with ``int(array)``, which
    numpy >= 2.4 refuses for shape (1,) arrays; loop bounds loaded from memory then fail."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor) -> None:
        original(tensor)
        tensor.__index__ = lambda self: int(self.handle.data.reshape(-1)[0])

    if getattr(original, "__name__", "") != "patched":
        interpreter._patch_lang_tensor = patched


if triton is not None and interpreted():
    _patch_interpreter()


@cache
def available() -> bool:
    """Whether the kernels can run: Triton importable and a CUDA device (or the interpreter)."""
    return triton is not None and (torch.cuda.is_available() or interpreted())


def csr_edges(pairs: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Directed edges sorted by destination from (2, E) pairs i<j.

    Returns ``rowptr`` (N+1,), ``col`` (2E,) source bead, ``edge`` (2E,) pair index,
    ``position`` (2E,) where directed edge d (d < E: i←j, else j←i) sits in the sorted order.
    """
    count = pairs.shape[1]
    destination = torch.cat([pairs[0], pairs[1]])
    source = torch.cat([pairs[1], pairs[0]])
    order = torch.argsort(destination, stable=True)
    # scatter_add, not bincount: bincount's output size depends on the data (a host sync),
    # which CUDA-graph capture forbids.
    counts = torch.zeros(num_nodes, dtype=torch.int64, device=pairs.device)
    counts.scatter_add_(0, destination, torch.ones_like(destination))
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=pairs.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    position = torch.empty_like(order)
    position[order] = torch.arange(2 * count, device=pairs.device)
    return rowptr, source[order].contiguous(), (order % max(count, 1)).contiguous(), position


def sum_directions(per_edge: Tensor, position: Tensor, count: int) -> Tensor:
    """(E,) pair values: the two directed edges of each pair added (a gather, no atomics)."""
    return per_edge[position[:count]] + per_edge[position[count:]]


if triton is not None:

    @triton.jit
    def edge_tile(
        offset,
        stop,
        col,
        edge,
        distances,
        features,
        channels,
        cmask,
        cutoff,
        F: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """One tile of a bead's directed edges: indices e, mask, distances r (cutoff where masked), h_j."""
        e = offset + tl.arange(0, BLOCK)
        emask = e < stop
        source = tl.load(col + e, mask=emask, other=0)
        pair = tl.load(edge + e, mask=emask, other=0)
        r = tl.load(distances + pair, mask=emask, other=cutoff)
        h = tl.load(
            features + source[:, None] * F + channels[None, :],
            mask=emask[:, None] & cmask[None, :],
            other=0.0,
        )
        return e, emask, r, h

    def launch(kernel):
        # The interpreter's kernels are not JITFunctions, which wrap_triton refuses; launch them directly.
        return kernel if interpreted() else wrap_triton(kernel)

    def grid(num_nodes: int) -> tuple:
        return (max(num_nodes, 1),)


def message_gradients(rows, edge_grads, csr: tuple, h: Tensor, distances: Tensor, grad: Tensor,
                      extra: tuple, count: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The backward of a row kernel: (∂/∂h (N, F), ∂/∂distances (E,)) for the incoming ``grad`` (N, F).

    ∂/∂h is the row kernel on ``grad`` (W is symmetric); ∂/∂r sums a pair's two directed edges.
    ``csr`` is :func:`csr_edges` of the pairs; ``count`` the number of pairs E.
    """
    rowptr, col, edge, position = csr
    grad = grad.contiguous()
    grad_h = rows(rowptr, col, edge, distances, grad, *extra)
    per_edge = edge_grads(rowptr, col, edge, distances, h, grad, *extra)
    return grad_h, sum_directions(per_edge, position, count)


class TritonConv(torch.autograd.Function):
    """Messages by a row kernel; backward: :func:`message_gradients`."""

    @staticmethod
    def forward(ctx, h: Tensor, pairs: Tensor, distances: Tensor, rows, edge_grads, extra: tuple) -> Tensor:
        rowptr, col, edge, position = csr_edges(pairs, h.shape[0])
        h, distances = h.contiguous(), distances.contiguous()
        ctx.save_for_backward(h, distances, rowptr, col, edge, position)
        ctx.kernels, ctx.extra, ctx.count = (rows, edge_grads), extra, pairs.shape[1]
        return rows(rowptr, col, edge, distances, h, *extra)

    @staticmethod
    @first_derivative_only("Triton")
    def backward(ctx, grad_out: Tensor):
        h, distances, *csr = ctx.saved_tensors
        grads = message_gradients(*ctx.kernels, tuple(csr), h, distances, grad_out, ctx.extra, ctx.count)
        return grads[0], None, grads[1], None, None, None
