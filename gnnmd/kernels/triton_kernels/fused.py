# ruff: noqa: N803  (Triton compile-time constants are upper case by convention)
"""``gnnmd::fused_rows`` and ``gnnmd::fused_edge_grads``: the exact filter network fused with the
convolution on Triton (``fused``; ``fused16`` with channel-wise 16-bit weights).

Per tile of directed edges the program evaluates basis, Linear, activation, Linear and the
cosine envelope in registers and reduces the messages; no (edges × features) tensor is
written. The second op is the first one's distance gradient. Units: distances in nm.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnmd.kernels.triton_kernels.common import BLOCK_E, TritonConv, triton

ACTIVATION_IDS = {"tanh": 0, "ssp": 1, "silu": 2}

if triton is not None:
    import triton.language as tl
    from torch.library import triton_op

    from gnnmd.kernels.triton_kernels.common import edge_tile, grid, launch

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
            e, emask, r, h = edge_tile(
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
            e, emask, r, h = edge_tile(
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
        launch(_fused_rows)[grid(features.shape[0])](
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
        launch(_fused_edge_grads)[grid(features.shape[0])](
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

    return TritonConv.apply(h, pairs, distances, rows, edge_grads, tuple(weights))
