# ruff: noqa: N803  (Triton compile-time constants are upper case by convention)
"""``gnnmd::tabulated_rows`` and ``gnnmd::tabulated_edge_grads``: the tabulated convolution on Triton.

Each block's filter is a cubic Hermite spline per channel (:mod:`gnnmd.kernels.tabulated`);
one program per bead walks its directed edges (CSR, :mod:`.common`), evaluates the spline
and reduces the messages in registers. The second op is the first one's distance gradient.
Units: distances in nm.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnmd.kernels.triton_kernels.common import BLOCK_E, TritonConv, csr_edges, message_gradients, triton

if triton is not None:
    import triton.language as tl
    from torch.library import triton_op

    from gnnmd.kernels.triton_kernels.common import edge_tile, grid, launch

    @triton.jit
    def _spline(
        coef,
        r,
        mask,
        cutoff,
        inv_spacing,
        segments,
        channels,
        cmask,
        F: tl.constexpr,
        DERIVATIVE: tl.constexpr,
    ):
        inside = mask & (r < cutoff)
        x = r * inv_spacing
        k = tl.minimum(x.to(tl.int32), segments - 1)
        t = (x - k.to(x.dtype))[:, None]
        base = coef + (k[:, None] * 4) * F + channels[None, :]
        both = inside[:, None] & cmask[None, :]
        c0 = tl.load(base, mask=both, other=0.0)
        c1 = tl.load(base + F, mask=both, other=0.0)
        c2 = tl.load(base + 2 * F, mask=both, other=0.0)
        c3 = tl.load(base + 3 * F, mask=both, other=0.0)
        if DERIVATIVE:
            return (c1 + t * (2.0 * c2 + 3.0 * t * c3)) * inv_spacing
        return c0 + t * (c1 + t * (c2 + t * c3))

    @triton.jit
    def _tabulated_rows(
        rowptr,
        col,
        edge,
        distances,
        coef,
        features,
        out,
        cutoff,
        inv_spacing,
        segments,
        F: tl.constexpr,
        BLOCK_F: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        node = tl.program_id(0)
        start = tl.load(rowptr + node)
        stop = tl.load(rowptr + node + 1)
        channels = tl.arange(0, BLOCK_F)
        cmask = channels < F
        acc = tl.zeros([BLOCK_F], dtype=tl.float32)
        for offset in range(start, stop, BLOCK):
            e, emask, r, h = edge_tile(
                offset, stop, col, edge, distances, features, channels, cmask, cutoff, F, BLOCK
            )
            w = _spline(coef, r, emask, cutoff, inv_spacing, segments, channels, cmask, F, False)
            acc += tl.sum(w * h, axis=0)
        tl.store(out + node * F + channels, acc, mask=cmask)

    @triton.jit
    def _tabulated_edge_grads(
        rowptr,
        col,
        edge,
        distances,
        coef,
        features,
        grad,
        out,
        cutoff,
        inv_spacing,
        segments,
        F: tl.constexpr,
        BLOCK_F: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        node = tl.program_id(0)
        start = tl.load(rowptr + node)
        stop = tl.load(rowptr + node + 1)
        channels = tl.arange(0, BLOCK_F)
        cmask = channels < F
        g = tl.load(grad + node * F + channels, mask=cmask, other=0.0)
        for offset in range(start, stop, BLOCK):
            e, emask, r, h = edge_tile(
                offset, stop, col, edge, distances, features, channels, cmask, cutoff, F, BLOCK
            )
            dw = _spline(coef, r, emask, cutoff, inv_spacing, segments, channels, cmask, F, True)
            tl.store(out + e, tl.sum(dw * h * g[None, :], axis=1), mask=emask)

    @triton_op("gnnmd::tabulated_rows", mutates_args=())
    def tabulated_rows(
        rowptr: Tensor,
        col: Tensor,
        edge: Tensor,
        distances: Tensor,
        coef: Tensor,
        features: Tensor,
        cutoff: float,
        inv_spacing: float,
    ) -> Tensor:
        out = torch.empty_like(features)
        if features.shape[0] == 0:
            return out
        launch(_tabulated_rows)[grid(features.shape[0])](
            rowptr,
            col,
            edge,
            distances,
            coef,
            features,
            out,
            cutoff,
            inv_spacing,
            coef.shape[0],
            F=features.shape[1],
            BLOCK_F=triton.next_power_of_2(features.shape[1]),
            BLOCK=BLOCK_E,
        )
        return out

    @triton_op("gnnmd::tabulated_edge_grads", mutates_args=())
    def tabulated_edge_grads(
        rowptr: Tensor,
        col: Tensor,
        edge: Tensor,
        distances: Tensor,
        coef: Tensor,
        features: Tensor,
        grad: Tensor,
        cutoff: float,
        inv_spacing: float,
    ) -> Tensor:
        out = torch.zeros(col.shape[0], dtype=features.dtype, device=features.device)
        if col.shape[0] == 0:
            return out
        launch(_tabulated_edge_grads)[grid(features.shape[0])](
            rowptr,
            col,
            edge,
            distances,
            coef,
            features,
            grad,
            out,
            cutoff,
            inv_spacing,
            coef.shape[0],
            F=features.shape[1],
            BLOCK_F=triton.next_power_of_2(features.shape[1]),
            BLOCK=BLOCK_E,
        )
        return out


def _row_kernels(inv_spacing: float, cutoff_nm: float) -> tuple:
    """The (rows, edge_grads) pair of :class:`~gnnmd.kernels.triton_kernels.common.TritonConv`
    for spline filters; both take the coefficients as their last argument."""

    def rows(rowptr, col, edge, r, features, coef):
        return tabulated_rows(rowptr, col, edge, r, coef, features, cutoff_nm, inv_spacing)

    def edge_grads(rowptr, col, edge, r, features, grad, coef):
        return tabulated_edge_grads(rowptr, col, edge, r, coef, features, grad, cutoff_nm, inv_spacing)

    return rows, edge_grads


def tabulated_conv(
    h: Tensor, pairs: Tensor, distances: Tensor, coefficients: Tensor, inv_spacing: float, cutoff_nm: float
) -> Tensor:
    """(N, F) messages with spline filters (see :class:`gnnmd.kernels.tabulated.TabulatedKernel`)."""
    rows, edge_grads = _row_kernels(inv_spacing, cutoff_nm)
    return TritonConv.apply(h, pairs, distances, rows, edge_grads, (coefficients.contiguous(),))


def conv_rows(
    features: Tensor, pairs: Tensor, distances: Tensor, coefficients: Tensor, inv_spacing: float,
    cutoff: float,
) -> Tensor:  # fmt: skip
    """The CUDA kernel of ``gnnmd::tabulated_conv`` (same arguments): (N, F) messages by the Triton rows."""
    coefficients = _widened(coefficients, features)
    _check_float32("tabulated_conv", features, distances, coefficients)
    rows, _ = _row_kernels(inv_spacing, cutoff)
    rowptr, col, edge, _ = csr_edges(pairs, features.shape[0])
    return rows(rowptr, col, edge, distances.contiguous(), features.contiguous(), coefficients.contiguous())


def conv_backward(
    grad: Tensor, features: Tensor, pairs: Tensor, distances: Tensor, coefficients: Tensor,
    inv_spacing: float, cutoff: float,
) -> tuple[Tensor, Tensor]:
    """The CUDA kernel of ``gnnmd::tabulated_conv_backward``: (∂/∂features (N, F), ∂/∂distances (E,))."""
    coefficients = _widened(coefficients, features)
    _check_float32("tabulated_conv_backward", features, distances, coefficients)
    csr = csr_edges(pairs, features.shape[0])
    return message_gradients(*_row_kernels(inv_spacing, cutoff), csr, features.contiguous(),
                             distances.contiguous(), grad.to(features.dtype), (coefficients.contiguous(),),
                             pairs.shape[1])  # fmt: skip


def _widened(coefficients: Tensor, features: Tensor) -> Tensor:
    """A float16 table (tabulated16) in the features' dtype: the Triton kernels read float32 tables."""
    return coefficients.to(features.dtype) if coefficients.dtype == torch.float16 else coefficients


def _check_float32(op: str, *tensors: Tensor) -> None:
    dtypes = {t.dtype for t in tensors}
    if dtypes != {torch.float32}:
        raise RuntimeError(f"{op} on CUDA runs the float32 Triton kernel; got {sorted(map(str, dtypes))}")


def register_cuda_kernels() -> None:
    """Give ``gnnmd::tabulated_conv`` and its backward (defined by the op library, which must be loaded)
    CUDA kernels, so that one op name serves CPU (C++) and CUDA (Triton); the op's C++ autograd
    formula calls the backward op on either device."""
    torch.library.register_kernel("gnnmd::tabulated_conv", "cuda", conv_rows)
    torch.library.register_kernel("gnnmd::tabulated_conv_backward", "cuda", conv_backward)
