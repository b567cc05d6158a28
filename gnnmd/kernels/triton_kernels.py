# ruff: noqa: N803  (Triton compile-time constants are upper case by convention)
"""Triton kernels of the ``fused``, ``fused16`` and ``tabulated`` backends (CUDA; CPU when interpreted).

Layout: the E unordered pairs become 2E directed edges sorted by destination
(CSR: ``rowptr``, ``col``, ``edge``). One program per bead walks its edges in
tiles of ``BLOCK_E`` and reduces the messages in registers, so the forward pass
writes each bead's message once, with no atomics and no edges × features
tensor. The backward pass needs

- ∂E/∂h_j = Σ_i W_ij ⊙ g_i: the forward kernel applied to g (W is symmetric);
- ∂E/∂r_ij: one scalar per directed edge (dest i: Σ_c ∂W_c/∂r · g_ic h_jc),
  the two directions of a pair summed by a gather (``position``), no atomics.

The ops are registered with ``torch.library.triton_op`` so they compose with
``torch.compile`` and CUDA graphs, and get their backward through
``register_autograd``. ``TRITON_INTERPRET=1`` runs them on CPU tensors (slowly),
which is how the test suite checks their arithmetic without a GPU.

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
    from torch.library import triton_op, wrap_triton
except ImportError:  # pragma: no cover - triton ships with torch on Linux
    triton = None

#: Directed edges per tile of a program.
BLOCK_E = 32
ACTIVATION_IDS = {"tanh": 0, "ssp": 1, "silu": 2}


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


def _sum_directions(per_edge: Tensor, position: Tensor, count: int) -> Tensor:
    """(E,) pair values: the two directed edges of each pair added (a gather, no atomics)."""
    return per_edge[position[:count]] + per_edge[position[count:]]


if triton is not None:

    @triton.jit
    def _edge_tile(
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
            e, emask, r, h = _edge_tile(
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
            e, emask, r, h = _edge_tile(
                offset, stop, col, edge, distances, features, channels, cmask, cutoff, F, BLOCK
            )
            dw = _spline(coef, r, emask, cutoff, inv_spacing, segments, channels, cmask, F, True)
            tl.store(out + e, tl.sum(dw * h * g[None, :], axis=1), mask=emask)

    @triton.jit
    def _activation(z, ACT: tl.constexpr):
        if ACT == 0:
            return 2.0 / (1.0 + tl.exp(-2.0 * z)) - 1.0
        elif ACT == 1:
            return tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z))) - 0.6931471805599453
        else:
            return z / (1.0 + tl.exp(-z))

    @triton.jit
    def _activation_slope(z, a, ACT: tl.constexpr):
        if ACT == 0:
            return 1.0 - a * a
        elif ACT == 1:
            return 1.0 / (1.0 + tl.exp(-z))
        else:
            s = 1.0 / (1.0 + tl.exp(-z))
            return s * (1.0 + z * (1.0 - s))

    @triton.jit
    def _basis(r, ks, kmask, centers, widths, alpha, cutoff, BASIS: tl.constexpr):
        """Radial basis (BLOCK, BLOCK_K) and its derivative in r; padded columns are zero.

        BASIS: 0 Gaussian, 1 ExpNormal; +2 for the basis multiplied by the cosine cutoff."""
        mu = tl.load(centers + ks, mask=kmask, other=0.0)
        beta = tl.load(widths + ks, mask=kmask, other=0.0)
        if BASIS % 2 == 0:
            offset = r[:, None] - mu[None, :]
            value = tl.exp(-beta[None, :] * offset * offset)
            slope = -2.0 * beta[None, :] * offset * value
        else:
            decay = tl.exp(-alpha * r)[:, None]
            offset = decay - mu[None, :]
            value = tl.exp(-beta[None, :] * offset * offset)
            slope = 2.0 * alpha * beta[None, :] * offset * decay * value
        if BASIS >= 2:
            envelope, envelope_slope = _envelope(r, cutoff)
            slope = slope * envelope[:, None] + value * envelope_slope[:, None]
            value = value * envelope[:, None]
        value = tl.where(kmask[None, :], value, 0.0)
        slope = tl.where(kmask[None, :], slope, 0.0)
        return value, slope

    @triton.jit
    def _filter_layers(
        rbf,
        w1,
        b1,
        s1,
        w2,
        b2,
        s2,
        ks,
        kmask,
        channels,
        cmask,
        K: tl.constexpr,
        F: tl.constexpr,
        ACT: tl.constexpr,
        HALF: tl.constexpr,
    ):
        """z (pre-activation), a, f (before the envelope) of one tile; weights as stored by nn.Linear."""
        # W1ᵀ tile (BLOCK_K, BLOCK_F): element [k, c] = W1[c, k].
        w1t = tl.load(
            w1 + channels[None, :] * K + ks[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0
        )
        w2t = tl.load(
            w2 + channels[None, :] * F + channels[:, None], mask=cmask[:, None] & cmask[None, :], other=0.0
        )
        bias1 = tl.load(b1 + channels, mask=cmask, other=0.0)
        bias2 = tl.load(b2 + channels, mask=cmask, other=0.0)
        scale1 = tl.load(s1 + channels, mask=cmask, other=0.0)
        scale2 = tl.load(s2 + channels, mask=cmask, other=0.0)
        if HALF:
            z = tl.dot(rbf.to(w1t.dtype), w1t, out_dtype=tl.float32)
        else:
            z = tl.dot(rbf, w1t, input_precision="ieee")
        z = z * scale1[None, :] + bias1[None, :]
        a = _activation(z, ACT)
        if HALF:
            f = tl.dot(a.to(w2t.dtype), w2t, out_dtype=tl.float32)
        else:
            f = tl.dot(a, w2t, input_precision="ieee")
        f = f * scale2[None, :] + bias2[None, :]
        return z, a, f

    @triton.jit
    def _envelope(r, cutoff):
        inside = r < cutoff
        phase = r * (3.141592653589793 / cutoff)
        value = tl.where(inside, 0.5 * (tl.cos(phase) + 1.0), 0.0)
        slope = tl.where(inside, -0.5 * (3.141592653589793 / cutoff) * tl.sin(phase), 0.0)
        return value, slope

    @triton.jit
    def _fused_rows(
        rowptr,
        col,
        edge,
        distances,
        features,
        out,
        w1,
        b1,
        s1,
        w2,
        b2,
        s2,
        centers,
        widths,
        alpha,
        cutoff,
        K: tl.constexpr,
        F: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_F: tl.constexpr,
        BLOCK: tl.constexpr,
        ACT: tl.constexpr,
        BASIS: tl.constexpr,
        HALF: tl.constexpr,
    ):
        node = tl.program_id(0)
        start = tl.load(rowptr + node)
        stop = tl.load(rowptr + node + 1)
        channels = tl.arange(0, BLOCK_F)
        cmask = channels < F
        ks = tl.arange(0, BLOCK_K)
        kmask = ks < K
        acc = tl.zeros([BLOCK_F], dtype=tl.float32)
        for offset in range(start, stop, BLOCK):
            e, emask, r, h = _edge_tile(
                offset, stop, col, edge, distances, features, channels, cmask, cutoff, F, BLOCK
            )
            rbf, _ = _basis(r, ks, kmask, centers, widths, alpha, cutoff, BASIS)
            _, _, f = _filter_layers(rbf, w1, b1, s1, w2, b2, s2, ks, kmask, channels, cmask, K, F, ACT, HALF)
            envelope, _ = _envelope(r, cutoff)
            acc += tl.sum(f * envelope[:, None] * h, axis=0)
        tl.store(out + node * F + channels, acc, mask=cmask)

    @triton.jit
    def _fused_edge_grads(
        rowptr,
        col,
        edge,
        distances,
        features,
        grad,
        out,
        w1,
        b1,
        s1,
        w2,
        b2,
        s2,
        centers,
        widths,
        alpha,
        cutoff,
        K: tl.constexpr,
        F: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_F: tl.constexpr,
        BLOCK: tl.constexpr,
        ACT: tl.constexpr,
        BASIS: tl.constexpr,
        HALF: tl.constexpr,
    ):
        node = tl.program_id(0)
        start = tl.load(rowptr + node)
        stop = tl.load(rowptr + node + 1)
        channels = tl.arange(0, BLOCK_F)
        cmask = channels < F
        ks = tl.arange(0, BLOCK_K)
        kmask = ks < K
        g = tl.load(grad + node * F + channels, mask=cmask, other=0.0)
        # Untransposed weights (with scales) for the backward products: dz·W1 and df·W2.
        w1_rows = tl.load(
            w1 + channels[:, None] * K + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0
        ).to(tl.float32)
        w1_rows = w1_rows * tl.load(s1 + channels, mask=cmask, other=0.0)[:, None]
        w2_rows = tl.load(
            w2 + channels[:, None] * F + channels[None, :], mask=cmask[:, None] & cmask[None, :], other=0.0
        ).to(tl.float32)
        w2_rows = w2_rows * tl.load(s2 + channels, mask=cmask, other=0.0)[:, None]
        for offset in range(start, stop, BLOCK):
            e, emask, r, h = _edge_tile(
                offset, stop, col, edge, distances, features, channels, cmask, cutoff, F, BLOCK
            )
            rbf, rbf_slope = _basis(r, ks, kmask, centers, widths, alpha, cutoff, BASIS)
            z, a, f = _filter_layers(rbf, w1, b1, s1, w2, b2, s2, ks, kmask, channels, cmask, K, F, ACT, HALF)
            envelope, envelope_slope = _envelope(r, cutoff)
            u = h * g[None, :]
            from_envelope = tl.sum(u * f, axis=1) * envelope_slope
            da = tl.dot(u * envelope[:, None], w2_rows, input_precision="ieee")
            dz = da * _activation_slope(z, a, ACT)
            drbf = tl.dot(dz, w1_rows, input_precision="ieee")
            tl.store(out + e, tl.sum(drbf * rbf_slope, axis=1) + from_envelope, mask=emask)

    def _launch(kernel):
        # The interpreter's kernels are not JITFunctions, which wrap_triton refuses; launch them directly.
        return kernel if interpreted() else wrap_triton(kernel)

    def _grid(num_nodes: int) -> tuple:
        return (max(num_nodes, 1),)

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
        _launch(_tabulated_rows)[_grid(features.shape[0])](
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
        _launch(_tabulated_edge_grads)[_grid(features.shape[0])](
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

    def _fused_meta(weights: list[Tensor], features: Tensor, act: int, basis: int, half: bool) -> dict:
        rows, columns = weights[0].shape
        return dict(
            K=columns,
            F=rows,
            BLOCK_K=max(16, triton.next_power_of_2(columns)),
            BLOCK_F=max(16, triton.next_power_of_2(rows)),
            BLOCK=BLOCK_E,
            ACT=act,
            BASIS=basis,
            HALF=half,
        )

    @triton_op("gnnmd::fused_rows", mutates_args=())
    def fused_rows(
        rowptr: Tensor,
        col: Tensor,
        edge: Tensor,
        distances: Tensor,
        features: Tensor,
        weights: list[Tensor],
        alpha: float,
        cutoff: float,
        act: int,
        basis: int,
        half: bool,
    ) -> Tensor:
        out = torch.empty_like(features)
        if features.shape[0] == 0:
            return out
        _launch(_fused_rows)[_grid(features.shape[0])](
            rowptr,
            col,
            edge,
            distances,
            features,
            out,
            *weights,
            alpha,
            cutoff,
            **_fused_meta(weights, features, act, basis, half),
        )
        return out

    @triton_op("gnnmd::fused_edge_grads", mutates_args=())
    def fused_edge_grads(
        rowptr: Tensor,
        col: Tensor,
        edge: Tensor,
        distances: Tensor,
        features: Tensor,
        grad: Tensor,
        weights: list[Tensor],
        alpha: float,
        cutoff: float,
        act: int,
        basis: int,
        half: bool,
    ) -> Tensor:
        out = torch.zeros(col.shape[0], dtype=features.dtype, device=features.device)
        if col.shape[0] == 0:
            return out
        _launch(_fused_edge_grads)[_grid(features.shape[0])](
            rowptr,
            col,
            edge,
            distances,
            features,
            grad,
            out,
            *weights,
            alpha,
            cutoff,
            **_fused_meta(weights, features, act, basis, half),
        )
        return out


class _TritonConv(torch.autograd.Function):
    """Messages by a row kernel; backward: the row kernel on g and per-edge distance gradients."""

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
        h, distances, rowptr, col, edge, position = ctx.saved_tensors
        rows, edge_grads = ctx.kernels
        grad_out = grad_out.contiguous()
        grad_h = rows(rowptr, col, edge, distances, grad_out, *ctx.extra)
        per_edge = edge_grads(rowptr, col, edge, distances, h, grad_out, *ctx.extra)
        return grad_h, None, _sum_directions(per_edge, position, ctx.count), None, None, None


def tabulated_conv(
    h: Tensor, pairs: Tensor, distances: Tensor, coefficients: Tensor, inv_spacing: float, cutoff_nm: float
) -> Tensor:
    """(N, F) messages with spline filters (see :class:`gnnmd.kernels.tabulated.TabulatedKernel`)."""

    def rows(rowptr, col, edge, r, features, coef):
        return tabulated_rows(rowptr, col, edge, r, coef, features, cutoff_nm, inv_spacing)

    def edge_grads(rowptr, col, edge, r, features, grad, coef):
        return tabulated_edge_grads(rowptr, col, edge, r, coef, features, grad, cutoff_nm, inv_spacing)

    return _TritonConv.apply(h, pairs, distances, rows, edge_grads, (coefficients.contiguous(),))


def fused_weights(kernel, dtype: torch.dtype) -> tuple[list[Tensor], float, int, int, bool]:
    """Kernel arguments of a :class:`~gnnmd.kernels.fused.FusedKernel`: weights, α, act, basis, 16-bit."""
    from gnnmd.kernels.quantize import QuantizedLinear

    unsupported = fused_unsupported(kernel)
    if unsupported:
        raise ValueError(f"the fused Triton kernel does not implement {unsupported}; use tabulated")
    function = kernel.filter
    first, _, second = function.layers
    tensors = []
    for layer in (first, second):
        if isinstance(layer, QuantizedLinear):
            tensors += [layer.weight16().contiguous(), layer.bias.to(dtype), layer.scale.to(dtype)]
        else:
            ones = torch.ones(layer.out_features, dtype=dtype, device=layer.weight.device)
            tensors += [layer.weight.to(dtype).contiguous(), layer.bias.to(dtype), ones]
    half = isinstance(first, QuantizedLinear)
    centers, widths = function.centers.to(dtype), function.widths.to(dtype)
    if function.basis == "gaussian":
        widths = 0.5 / widths**2  # the kernel's β in exp(-β (r - μ)²)
        alpha, basis_id = 0.0, 0
    else:
        alpha, basis_id = function.alpha, 1
    basis_id += 2 if function.basis_enveloped else 0
    act = ACTIVATION_IDS[function.activation]
    return tensors + [centers.contiguous(), widths.contiguous()], float(alpha), act, basis_id, half


def fused_unsupported(kernel) -> str:
    """What of ``kernel``'s filter the fused Triton kernel cannot compute ("" when it computes all of it)."""
    function = kernel.filter
    if len(function.layers) != 3:
        linear = (len(function.layers) + 1) // 2
        return f"a filter network of {linear} linear layer(s) (it computes Linear, activation, Linear)"
    if function.activation not in ACTIVATION_IDS:
        return f"the activation {function.activation} (it computes {sorted(ACTIVATION_IDS)})"
    if function.basis_enveloped and (function.basis_cutoff_nm, function.basis_lower_nm) != (
        function.cutoff_nm,
        0.0,
    ):
        return (
            f"a radial basis enveloped on [{function.basis_lower_nm}, {function.basis_cutoff_nm}] nm "
            f"(it computes the envelope on [0, {function.cutoff_nm}] nm, the filter's own)"
        )
    if function.lower_nm > 0.0:
        return f"a lower cutoff ({function.lower_nm} nm)"
    return ""


def fused_conv(h: Tensor, pairs: Tensor, distances: Tensor, kernel) -> Tensor:
    """(N, F) messages with the exact (or 16-bit) filter network, fused."""
    weights, alpha, act, basis, half = fused_weights(kernel, h.dtype)
    cutoff = float(kernel.filter.cutoff_nm)

    def rows(rowptr, col, edge, r, features, *tensors):
        return fused_rows(rowptr, col, edge, r, features, list(tensors), alpha, cutoff, act, basis, half)

    def edge_grads(rowptr, col, edge, r, features, grad, *tensors):
        return fused_edge_grads(
            rowptr, col, edge, r, features, grad, list(tensors), alpha, cutoff, act, basis, half
        )

    return _TritonConv.apply(h, pairs, distances, rows, edge_grads, tuple(weights))


__all__ = ["available", "csr_edges", "tabulated_conv", "fused_conv"]
