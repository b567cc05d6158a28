"""Tabulated filters: each block's filter network W(r) as a cubic Hermite spline.

After training, W(r) = filter_net(rbf(r)) · C(r) is a fixed function of the pair
distance alone, one per interaction block. It is sampled with its exact
derivative (autograd, float64) on a uniform grid over [0, r_c] and interpolated
with cubic Hermite splines, so both W and dW/dr are continuous and forces stay
conservative. The grid is refined until the interpolation error, checked
between the nodes against the exact network, is below a tolerance
(:data:`DEFAULT_TOLERANCE`, relative to the RMS of the exact filter and its
derivative) chosen under the rounding error of 16-bit weights.

The convolution then needs no matrix products per pair: per pair and channel,
one Horner polynomial and two multiply-adds forward, and about twice that
backward. Implementations: :class:`NativeTabulatedKernel` calls the registered
op ``torch.ops.gnnmd.tabulated_conv`` (C++, ``csrc/tabulated_conv.cpp``), in
eager mode and in TorchScript alike (so openmm-torch runs it), and a Triton
kernel on CUDA devices in eager mode; :class:`TabulatedKernel` is its pure-torch
twin.

Units: distances and the grid spacing in nm; W is dimensionless.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from gnnmd.kernels.filter_function import FilterFunction
from gnnmd.kernels.filter_spec import FilterRecord
from gnnmd.kernels.reference import aggregate_pairs

#: Largest interpolation error allowed, relative to the RMS of W and of dW/dr over [0, r_c]:
#: 2^-11, the relative rounding of a float16 weight (bfloat16: 2^-8). Smaller tolerances
#: mean larger tables, which cost speed once they leave the cache (1024 segments x 128
#: channels of float32 coefficients are 2 MiB per block).
DEFAULT_TOLERANCE = 2.0**-11
GRID_SIZES = (256, 512, 1024, 2048, 4096, 8192)


def exact_filter(exact: FilterFunction, r_nm: Tensor) -> Tuple[Tensor, Tensor]:
    """W(r) (S, F) and dW/dr (S, F) in 1/nm of one block, by forward-mode autodiff in ``r_nm``'s dtype."""
    r = r_nm.detach()
    values, derivatives = torch.func.jvp(exact, (r,), (torch.ones_like(r),))
    return values.detach(), derivatives.detach()


def hermite_coefficients(values: Tensor, derivatives: Tensor, spacing_nm: float) -> Tensor:
    """Monomial coefficients (S-1, 4, F) of the cubic Hermite spline through the (S, F) nodes.

    On segment k, W(t) = c0 + c1 t + c2 t² + c3 t³ with t = r/dr − k in [0, 1).
    """
    y0, y1 = values[:-1], values[1:]
    d0, d1 = derivatives[:-1] * spacing_nm, derivatives[1:] * spacing_nm
    return torch.stack([y0, d0, 3 * (y1 - y0) - 2 * d0 - d1, 2 * (y0 - y1) + d0 + d1], dim=1)


def evaluate_spline(coefficients: Tensor, inv_spacing: float, cutoff_nm: float, r_nm: Tensor) -> Tensor:
    """W(r) (E, F) from spline coefficients; zero at and beyond the cutoff. Differentiable in ``r_nm``."""
    segments = coefficients.shape[0]
    x = r_nm * inv_spacing
    k = torch.clamp(x.detach().floor(), 0, segments - 1).to(torch.int64)
    t = (x - k.to(x.dtype))[:, None]
    c = coefficients.index_select(0, k)
    w = c[:, 0] + t * (c[:, 1] + t * (c[:, 2] + t * c[:, 3]))
    return w * (r_nm < cutoff_nm).to(w.dtype)[:, None]


def interpolation_error(exact: FilterFunction, cutoff_nm: float, points: int) -> Tuple[float, float]:
    """Max error of W and dW/dr between nodes, relative to their RMS, for ``points`` segments."""
    with torch.no_grad():
        nodes = torch.linspace(0.0, cutoff_nm, points + 1, dtype=torch.float64)
        values, derivatives = exact_filter(exact, nodes)
        coefficients = hermite_coefficients(values, derivatives, cutoff_nm / points)
        # Quarter and half points of every segment: where Hermite errors peak.
        offsets = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
        probe = (
            (torch.arange(points, dtype=torch.float64)[:, None] + offsets) * (cutoff_nm / points)
        ).flatten()
        exact_w, exact_dw = exact_filter(exact, probe)

    def spline(x: Tensor) -> Tensor:
        return evaluate_spline(coefficients, points / cutoff_nm, cutoff_nm, x)

    w, dw = torch.func.jvp(spline, (probe,), (torch.ones_like(probe),))
    value_error = (w - exact_w).abs().max() / exact_w.pow(2).mean().sqrt().clamp_min(1e-300)
    slope_error = (dw - exact_dw).abs().max() / exact_dw.pow(2).mean().sqrt().clamp_min(1e-300)
    return float(value_error), float(slope_error)


def tabulate_block(
    record: FilterRecord, tolerance: float = DEFAULT_TOLERANCE, points: int | None = None
) -> Tuple[Tensor, dict]:
    """Spline coefficients (S, 4, F) float64 of one block's filter on [0, its cutoff], and a report
    (grid size, errors).

    ``points`` fixes the number of segments; otherwise the smallest of :data:`GRID_SIZES`
    meeting ``tolerance`` is used (the largest if none does; the report says so).
    """
    exact = FilterFunction(record).double()
    cutoff_nm = record.cutoff_nm
    candidates = (points,) if points is not None else GRID_SIZES
    for size in candidates:
        value_error, slope_error = interpolation_error(exact, cutoff_nm, size)
        if max(value_error, slope_error) <= tolerance:
            break
    nodes = torch.linspace(0.0, cutoff_nm, size + 1, dtype=torch.float64)
    values, derivatives = exact_filter(exact, nodes)
    report = {
        "segments": size,
        "spacing_nm": cutoff_nm / size,
        "value_error": value_error,
        "slope_error": slope_error,
        "tolerance": tolerance,
        "met": max(value_error, slope_error) <= tolerance,
    }
    return hermite_coefficients(values, derivatives, cutoff_nm / size), report


#: Largest finite float16.
FLOAT16_MAX = 65504.0


def half_table(coefficients: Tensor, report: dict) -> Tensor:
    """``coefficients`` (S, 4, F) as float16 (the ``tabulated16`` backend), recording in ``report``
    the rounding: the largest change of W at the grid's quarter points, relative to the RMS of W
    (the same measure as the interpolation error). Raises ValueError where a coefficient
    overflows float16."""
    largest = float(coefficients.abs().max())
    if largest > FLOAT16_MAX:
        raise ValueError(f"tabulated16: a spline coefficient of {largest:.4g} overflows float16 "
                         f"(largest {FLOAT16_MAX}); use the tabulated backend")  # fmt: skip
    table = coefficients.to(torch.float16)
    # Distances in units of the spacing: segment k's quarter points are k, k + 1/4, k + 1/2, k + 3/4.
    segments = coefficients.shape[0]
    quarters = torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=torch.float64)
    probe = (torch.arange(segments, dtype=torch.float64)[:, None] + quarters).flatten()
    exact, rounded = (evaluate_spline(c.double(), 1.0, float(segments), probe) for c in (coefficients, table))
    rms = float(exact.pow(2).mean().sqrt()) or 1.0
    report.update(table_dtype="float16", rounding_error=float((rounded - exact).abs().max()) / rms)
    return table


class TabulatedKernel(nn.Module):
    """Σ_j W(r_ij) ⊙ h_j with W(r) a per-block cubic Hermite spline: the pure-torch twin.

    Args:
        coefficients: (S, 4, F) spline coefficients (float64; cast to the model dtype with it).
        cutoff_nm: r_c in nm; the table covers [0, r_c].
        report: what :func:`tabulate_block` measured (kept for reports, not used).
    """

    #: What runs on CPUs (see :func:`gnnmd.kernels.resolve_implementation`).
    implementation = "torch"

    def __init__(self, coefficients: Tensor, cutoff_nm: float, report: dict | None = None) -> None:
        super().__init__()
        # Not persistent: a checkpoint of a converted model stores the exact network only.
        self.register_buffer("coefficients", coefficients.contiguous(), persistent=False)
        self.cutoff_nm = float(cutoff_nm)
        self.inv_spacing = float(coefficients.shape[0] / cutoff_nm)
        self.report = dict(report or {})
        self.half_table = coefficients.dtype == torch.float16

    @torch.jit.ignore
    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # A float16 table (tabulated16) stays float16 when the model changes dtype (.float(),
        # .double(), .to(dtype)): the kernels take it as it is and widen it where they must.
        super()._apply(fn, recurse)
        if self.half_table and self.coefficients.dtype != torch.float16:
            self.coefficients = self.coefficients.to(torch.float16)
        return self

    def forward(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """(N, F) messages from (N, F) features, (2, E) pairs i<j and (E,) distances in nm."""
        if not torch.jit.is_scripting() and h.is_cuda:
            return self._cuda(h, pairs, distances)
        return self._torch(h, pairs, distances)

    def filters(self, distances: Tensor) -> Tensor:
        """(E, F) W(r) of (E,) distances in nm, interpolated."""
        table = self._typed_coefficients(distances)
        return evaluate_spline(table, self.inv_spacing, self.cutoff_nm, distances)

    def _torch(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        return aggregate_pairs(h, self.filters(distances), pairs)

    def _typed_coefficients(self, h: Tensor) -> Tensor:
        return self.coefficients if self.coefficients.dtype == h.dtype else self.coefficients.to(h.dtype)

    def _op_coefficients(self, h: Tensor) -> Tensor:
        # The op reads a float16 table (tabulated16) as it is, or widens it itself.
        return self.coefficients if self.half_table else self._typed_coefficients(h)

    @torch.jit.unused
    def _cuda(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        from gnnmd.kernels import triton_kernels

        if triton_kernels.available() and h.dtype == torch.float32:
            coefficients = self._typed_coefficients(h)  # Triton reads float32 tables
            return triton_kernels.tabulated_conv(
                h, pairs, distances, coefficients, self.inv_spacing, self.cutoff_nm
            )
        return self._torch(h, pairs, distances)


class NativeTabulatedKernel(TabulatedKernel):
    """The same spline filters through the registered op ``torch.ops.gnnmd.tabulated_conv``.

    The op (C++, autograd included) is what TorchScript records, so an exported
    model runs it inside openmm-torch; the op library must be loaded in the
    process that builds or loads the module (:func:`gnnmd.kernels.ops.load`).
    """

    implementation = "native-cpu"

    def forward(self, h: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """(N, F) messages from (N, F) features, (2, E) pairs i<j and (E,) distances in nm."""
        if not torch.jit.is_scripting() and h.is_cuda:
            return self._cuda(h, pairs, distances)
        return torch.ops.gnnmd.tabulated_conv(
            h, pairs, distances, self._op_coefficients(h), self.inv_spacing, self.cutoff_nm
        )
