"""The registered op ``gnnmd::tabulated_conv``: built at install, opcheck, float64 gradcheck, equal to its
pure-torch twin on random graphs (empty, isolated beads, pairs beyond the cutoff, mixed sizes),
recorded in TorchScript, and no silent fallback when it is missing.

Tolerances against the twin (the same spline in plain torch): float64 1e-12 relative to the largest
value; float32 1e-5.
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gnnmd.kernels import build, ops
from gnnmd.kernels.tabulated import NativeTabulatedKernel, TabulatedKernel, tabulate_block
from gnnmd.nn.backends import implementation_of, use_backend
from gnnmd.nn.schnet import SchNet


class OpCounter(TorchDispatchMode):
    """Counts the ops that reach the dispatcher below autograd, by schema name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name.startswith("gnnmd::"):
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def test_the_op_library_was_built_at_install():
    """Fails (never skips) on a machine with a C++ compiler where `make` did not build the library."""
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler on this machine: the op library cannot be built")
    assert ops.library_path().is_file(), "run `python -m gnnmd.kernels.build` (make does)"
    assert build.is_current(), "the library is stale: sources or torch changed since it was built"
    assert ops.load() == ops.library_path()
    assert hasattr(torch.ops.gnnmd, "tabulated_conv")


def spline(features: int = 8, dtype=torch.float64):
    torch.manual_seed(0)
    net = SchNet(4, hidden_channels=features, num_filters=features, num_interactions=1, num_rbf=6,
                 cutoff_nm=1.0, rbf="gaussian", act="tanh").double()  # fmt: skip
    coefficients, _ = tabulate_block(net.filter_records()[0], points=64)
    return coefficients.to(dtype)


def graph(sizes: list[int], isolated: int, features: int, dtype, seed: int, spread: float = 1.3):
    """Pairs i<j within graphs of ``sizes``, ``isolated`` beads without pairs; distances in [0, spread)."""
    generator = torch.Generator().manual_seed(seed)
    blocks, offset = [], 0
    for size in sizes:
        blocks.append(torch.combinations(torch.arange(size), 2).t() + offset)
        offset += size
    pairs = torch.cat(blocks, 1).contiguous() if blocks else torch.zeros(2, 0, dtype=torch.int64)
    distances = (torch.rand(pairs.shape[1], generator=generator, dtype=torch.float64) * spread).to(dtype)
    features_ = torch.randn(offset + isolated, features, generator=generator, dtype=torch.float64).to(dtype)
    return features_, pairs, distances


CASES = {
    "mixed graphs": ([9, 4, 6], 2, 1.3),
    "all beyond the cutoff": ([5], 0, 0.0),  # distances shifted past r_c below
    "empty pair list": ([], 3, 1.3),
    "isolated only": ([1, 1], 1, 1.3),
}


def inputs(case: str, dtype):
    sizes, isolated, spread = CASES[case]
    h, pairs, r = graph(sizes, isolated, 8, dtype, seed=len(case), spread=spread)
    if case == "all beyond the cutoff":
        r = r + 1.0 + torch.rand_like(r)
    return h, pairs, r, spline(8, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_opcheck(case, dtype):
    h, pairs, r, coefficients = inputs(case, dtype)
    torch.library.opcheck(torch.ops.gnnmd.tabulated_conv.default, (h, pairs, r, coefficients, 64.0, 1.0))
    grad = torch.randn_like(h)
    torch.library.opcheck(
        torch.ops.gnnmd.tabulated_conv_backward.default, (grad, h, pairs, r, coefficients, 64.0, 1.0)
    )


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case", list(CASES))
def test_equals_the_torch_twin_forward_and_backward(case, dtype, tolerance):
    h, pairs, r, coefficients = inputs(case, dtype)
    twin = TabulatedKernel(coefficients, 1.0)
    native = NativeTabulatedKernel(coefficients, 1.0)
    upstream = torch.randn_like(h)
    results = []
    for kernel in (twin, native):
        hh, rr = h.clone().requires_grad_(True), r.clone().requires_grad_(True)
        out = kernel(hh, pairs, rr)
        grads = torch.autograd.grad(out, (hh, rr), upstream, allow_unused=True)
        results.append([out.detach(), *(g if g is not None else torch.zeros_like(x) for g, x in
                                        zip(grads, (hh, rr), strict=True))])  # fmt: skip
    for expected, got in zip(*results, strict=True):
        scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-30)
        assert float((got - expected).abs().max() if got.numel() else 0.0) <= tolerance * scale


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("order", ["packed", "shuffled"])
def test_threads_and_pair_order_do_not_change_the_result(threads, order):
    """Packed graphs are cut at graph boundaries (one piece per thread); shuffled pairs cannot be
    cut and take per-thread buffers. Both equal the torch twin forward and backward."""
    h, pairs, r = graph([30, 7, 22, 1, 15], 2, 8, torch.float64, seed=threads)
    if order == "shuffled":
        permutation = torch.randperm(pairs.shape[1], generator=torch.Generator().manual_seed(1))
        pairs, r = pairs[:, permutation].contiguous(), r[permutation].contiguous()
    coefficients = spline(8)
    upstream = torch.randn_like(h)
    results = []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for kernel in (TabulatedKernel(coefficients, 1.0), NativeTabulatedKernel(coefficients, 1.0)):
            hh, rr = h.clone().requires_grad_(True), r.clone().requires_grad_(True)
            out = kernel(hh, pairs, rr)
            results.append([out.detach(), *torch.autograd.grad(out, (hh, rr), upstream)])
    finally:
        torch.set_num_threads(previous)
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * float(expected.abs().max()))


def test_pairs_outside_the_features_are_refused():
    h, pairs, r, coefficients = inputs("mixed graphs", torch.float64)
    bad = pairs.clone()
    bad[1, 5] = h.shape[0]
    rows = h.shape[0]
    with pytest.raises(RuntimeError, match=rf"pair 5 is \(\d+, {rows}\), outside the {rows} rows"):
        torch.ops.gnnmd.tabulated_conv(h, bad, r, coefficients, 64.0, 1.0)
    bad[1, 5] = -1
    with pytest.raises(RuntimeError, match="outside the"):
        torch.ops.gnnmd.tabulated_conv(h, bad, r, coefficients, 64.0, 1.0)


def test_gradcheck_and_no_second_derivatives():
    h, pairs, r, coefficients = inputs("mixed graphs", torch.float64)
    r = 0.05 + 0.9 * r / 1.3  # inside the cutoff, away from its edge

    def call(h, r):
        return torch.ops.gnnmd.tabulated_conv(h, pairs, r, coefficients, 64.0, 1.0)

    args = (h.requires_grad_(True), r.requires_grad_(True))
    assert torch.autograd.gradcheck(call, args, eps=1e-6, atol=1e-7, rtol=1e-5)
    with pytest.raises(RuntimeError, match="gives first derivatives only"):
        torch.autograd.gradgradcheck(call, args)
    with pytest.raises(RuntimeError, match="the spline coefficients are fixed"):
        torch.ops.gnnmd.tabulated_conv(h, pairs, r, coefficients.clone().requires_grad_(True), 64.0, 1.0)


def test_bad_inputs_are_named():
    h, pairs, r, coefficients = inputs("mixed graphs", torch.float64)
    with pytest.raises(RuntimeError, match=r"coefficients must be \(S, 4, F\) with F = 8"):
        torch.ops.gnnmd.tabulated_conv(h, pairs, r, coefficients[:, :, :4], 64.0, 1.0)
    with pytest.raises(RuntimeError, match="must share one dtype"):
        torch.ops.gnnmd.tabulated_conv(h.float(), pairs, r, coefficients, 64.0, 1.0)
    with pytest.raises(RuntimeError, match=r"distances must be \(E,\)"):
        torch.ops.gnnmd.tabulated_conv(h, pairs, r[:-1], coefficients, 64.0, 1.0)


def test_torchscript_records_the_op(small_model):
    converted = use_backend(small_model, "tabulated")
    assert isinstance(converted.network.interactions[0].kernel, NativeTabulatedKernel)
    scripted = torch.jit.script(converted)
    assert "gnnmd::tabulated_conv" in str(scripted.inlined_graph)


def test_a_missing_library_raises_unless_fallback_is_allowed(small_model, monkeypatch, capsys):
    from gnnmd import kernels

    def missing():
        raise ops.OpsUnavailableError("/x/libgnnmd_ops.so: the gnnmd op library is not built")

    monkeypatch.setattr(ops, "load", missing)
    monkeypatch.setattr(kernels, "_FALLBACKS_SAID", set())
    with pytest.raises(ops.OpsUnavailableError, match="not built. Pass --allow-fallback"):
        use_backend(small_model, "tabulated")
    fallen = use_backend(small_model, "tabulated", allow_fallback=True)
    assert implementation_of(fallen, "cpu") == "torch (fallback)"
    assert type(fallen.network.interactions[0].kernel) is TabulatedKernel
    use_backend(small_model, "tabulated", allow_fallback=True)
    assert capsys.readouterr().err.count("falls back to pure torch") == 1  # said once
    assert implementation_of(use_backend(small_model, "fused"), "cpu") == "torch-chunked"
    assert implementation_of(small_model, "cpu") == "torch"


@pytest.mark.parametrize("features", [8, 32, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float16_tables_compute_what_their_widened_tables_do(features, dtype):
    """tabulated16: a float16 table gives what the same table widened to the features' dtype gives,
    forward and backward, whether the float16 kernels read it (float32, 32 or 128 channels on
    AVX-512) or the op widens it first (8 channels, float64); opcheck of both ops."""
    ops.load()
    h, pairs, r = graph([30, 7, 22], 2, features, dtype, seed=features)
    half = spline(features).half()
    widened = half.to(dtype)
    grad = torch.randn_like(h)
    torch.library.opcheck(torch.ops.gnnmd.tabulated_conv.default, (h, pairs, r, half, 64.0, 1.0))
    backward = torch.ops.gnnmd.tabulated_conv_backward
    torch.library.opcheck(backward.default, (grad, h, pairs, r, half, 64.0, 1.0))
    forward = torch.ops.gnnmd.tabulated_conv
    results = [(forward(h, pairs, r, table, 64.0, 1.0), *backward(grad, h, pairs, r, table, 64.0, 1.0))
               for table in (half, widened)]  # fmt: skip
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
