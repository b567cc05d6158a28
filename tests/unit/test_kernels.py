"""Kernel backends against the reference, forward (energies) and backward (forces).

Tolerances (forces: error relative to the reference force RMS over all beads):
fused 1e-10 max in float64; tabulated 1e-3 max (the grid is built for 1e-4
relative filter-slope error); fused16 with float16 weights 1e-2 RMS, bfloat16
3e-2 RMS. Energies likewise relative to the spread of the network energy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gnnmd.kernels import BACKENDS, resolve_backend
from gnnmd.kernels.filter_function import FilterFunction
from gnnmd.kernels.quantize import QuantizedLinear
from gnnmd.kernels.tabulated import TabulatedKernel, evaluate_spline, exact_filter, half_table, tabulate_block
from gnnmd.models import load_model, save_checkpoint
from gnnmd.neighbors import within_cutoff
from gnnmd.nn.backends import backend_of, implementation_of, use_backend
from tests.conftest import perturbed
from tests.unit.test_ops import OpCounter

FORCE_TOLERANCE = {"reference": 1e-12, "fused": 1e-10, "tabulated": 1e-3, "tabulated16": 3e-3,
                   "fused16": 2e-2}  # fmt: skip


def network_energy_forces(model, batch, positions):
    """Network-only energies (G,) and forces (N, 3): the priors would hide kernel errors."""
    x = positions.detach().clone().requires_grad_(True)
    pairs, _, distances = within_cutoff(x, batch.pairs, batch.graph_index, model.cutoff_nm)
    bead = model.network(batch.types, pairs, distances)
    energy = torch.zeros(batch.ptr.shape[0] - 1, dtype=x.dtype).index_add(0, batch.graph_index, bead)
    (gradient,) = torch.autograd.grad(energy.sum(), x, allow_unused=True)
    return energy.detach(), (-gradient if gradient is not None else torch.zeros_like(x))


@pytest.fixture()
def mixed(small_model, chignolin, villin):
    """Replicas of different sizes in one batch (chignolin, villin, chignolin), perturbed."""
    topologies = [chignolin.topology, villin.topology, chignolin.topology]
    batch = small_model.pack(topologies)
    positions = np.concatenate([chignolin.positions_nm, villin.positions_nm, chignolin.positions_nm])
    return batch, perturbed(positions, 0.03, seed=4)


def relative_errors(model, converted, batch, positions):
    e0, f0 = network_energy_forces(model, batch, positions)
    e1, f1 = network_energy_forces(converted, batch, positions)
    scale = f0.pow(2).mean().sqrt()
    return (
        float((e1 - e0).abs().max() / e0.abs().max()),
        float((f1 - f0).abs().max() / scale),
        float((f1 - f0).pow(2).mean().sqrt() / scale),
    )


@pytest.mark.parametrize("backend", ["fused", "tabulated"])
def test_exact_backends_match_reference(small_model, mixed, backend):
    batch, positions = mixed
    energy_error, force_max, _ = relative_errors(
        small_model, use_backend(small_model, backend), batch, positions
    )
    assert force_max < FORCE_TOLERANCE[backend]
    assert energy_error < FORCE_TOLERANCE[backend]


@pytest.mark.parametrize(("weight_dtype", "tolerance"), [(torch.float16, 1e-2), (torch.bfloat16, 3e-2)])
def test_fused16_error_is_bounded(small_model, mixed, weight_dtype, tolerance):
    batch, positions = mixed
    converted = use_backend(small_model, "fused16", weight_dtype=weight_dtype)
    energy_error, _, force_rms = relative_errors(small_model, converted, batch, positions)
    assert 0 < force_rms < tolerance  # nonzero: the weights really are 16-bit
    assert energy_error < tolerance


def torch_twin(converted):
    """The same tabulated model with every kernel on its pure-torch twin."""
    twin = copy.deepcopy(converted)
    twin.network.network_kernel = None
    for block in twin.network.interactions:
        block.kernel.__class__ = TabulatedKernel
    return twin


def test_tabulated_native_kernel_equals_torch_path(small_model, mixed):
    batch, positions = mixed
    converted = use_backend(small_model, "tabulated")
    with OpCounter() as counter:
        e_native, f_native = network_energy_forces(converted, batch, positions)
    blocks = len(converted.network.interactions)
    # The blocks and readout are one op (tests/unit/test_network_op.py); without it, one per block.
    assert counter.calls == {"gnnmd::tabulated_network_saved": 1, "gnnmd::tabulated_network_backward": 1}
    converted.network.network_kernel = None
    with OpCounter() as counter:
        network_energy_forces(converted, batch, positions)
    assert counter.calls == {"gnnmd::tabulated_conv": blocks, "gnnmd::tabulated_conv_backward": blocks}
    e_torch, f_torch = network_energy_forces(torch_twin(converted), batch, positions)
    torch.testing.assert_close(e_native, e_torch, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f_native, f_torch, rtol=1e-10, atol=1e-10)


def test_tabulated_native_kernel_float32_many_pairs(small_model, chignolin):
    """Enough pairs to split over threads; float32 as in the runner."""
    model = small_model.float()
    converted = use_backend(model, "tabulated")
    assert implementation_of(converted, "cpu") == "native-cpu"
    batch = model.pack([chignolin.topology] * 8)
    positions = perturbed(np.tile(chignolin.positions_nm, (8, 1)), 0.05, seed=2).float()
    e_native, f_native = network_energy_forces(converted, batch, positions)
    e_torch, f_torch = network_energy_forces(torch_twin(converted), batch, positions)
    torch.testing.assert_close(e_native, e_torch, rtol=1e-5, atol=1e-5)
    scale = f_torch.pow(2).mean().sqrt()
    assert float((f_native - f_torch).abs().max() / scale) < 1e-5


def test_tabulation_meets_its_tolerance(small_model):
    converted = use_backend(small_model, "tabulated", tolerance=1e-5)
    for block in converted.network.interactions:
        report = block.kernel.report
        assert report["met"] and max(report["value_error"], report["slope_error"]) <= 1e-5
    coarse = use_backend(small_model, "tabulated", points=16)
    assert coarse.network.interactions[0].kernel.report["slope_error"] > 1e-5  # the check is not vacuous


def test_spline_passes_through_its_nodes_and_follows_the_exact_filter(small_model):
    """At the grid nodes the spline's value and slope are the exact filter's (float64 round-off);
    between them it stays within the reported interpolation error; past the cutoff it is zero."""
    record = small_model.network.filter_records()[0]
    exact = FilterFunction(record).double()
    coefficients, report = tabulate_block(record, points=128)
    spacing = record.cutoff_nm / 128
    nodes = torch.arange(128, dtype=torch.float64) * spacing

    def spline(r):
        return evaluate_spline(coefficients, 1 / spacing, record.cutoff_nm, r)

    # The report's errors are maxima over probes at 1/4, 1/2 and 3/4 of each segment: between them
    # the error may be a little larger.
    between = torch.rand(500, dtype=torch.float64) * record.cutoff_nm
    probes = [(nodes, (1e-12, 1e-9)), (between, (1.5 * report["value_error"], 1.5 * report["slope_error"]))]
    for r, tolerance in probes:
        w, dw = torch.func.jvp(spline, (r,), (torch.ones_like(r),))
        exact_w, exact_dw = exact_filter(exact, r)
        rms_w, rms_dw = exact_w.pow(2).mean().sqrt(), exact_dw.pow(2).mean().sqrt()
        assert float((w - exact_w).abs().max() / rms_w) <= tolerance[0]
        assert float((dw - exact_dw).abs().max() / rms_dw) <= tolerance[1]
    beyond = torch.tensor([record.cutoff_nm, 1.5 * record.cutoff_nm], dtype=torch.float64)
    assert float(spline(beyond).abs().max()) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_cases(small_model, chignolin, backend):
    """Isolated beads, all pairs beyond the cutoff, and an empty pair list give reference results."""
    converted = use_backend(small_model, backend)
    batch = small_model.pack([chignolin.topology, chignolin.topology])
    spread = torch.tensor(chignolin.positions_nm, dtype=torch.float64)
    far_apart = torch.arange(chignolin.topology.n_beads, dtype=torch.float64)[:, None] * torch.tensor(
        [2.5, 0.0, 0.0], dtype=torch.float64
    )
    positions = torch.cat([spread, far_apart])  # replica 1: every bead isolated
    for case in (positions, torch.cat([far_apart, far_apart])):
        e0, f0 = network_energy_forces(small_model, batch, case)
        e1, f1 = network_energy_forces(converted, batch, case)
        tolerance = FORCE_TOLERANCE[backend]
        torch.testing.assert_close(e1, e0, rtol=tolerance, atol=tolerance)
        scale = max(float(f0.pow(2).mean().sqrt()), 1e-12)
        assert float((f1 - f0).abs().max()) <= tolerance * scale + 1e-12
    empty = torch.zeros(2, 0, dtype=torch.int64)
    distances = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    bead = converted.network(batch.types, empty, distances)
    reference = small_model.network(batch.types, empty, distances.detach())
    tolerance = FORCE_TOLERANCE[backend]
    torch.testing.assert_close(bead, reference, rtol=tolerance, atol=tolerance)


def test_tabulated16_keeps_float16_tables_and_reports_their_rounding(small_model, chignolin):
    """The tables stay float16 through dtype changes of the model and its network op; the report
    says so with the rounding; the forces stay within the backend's tolerance; a coefficient too
    large for float16 is refused."""
    converted = use_backend(small_model, "tabulated16")
    for model in (converted.float(), converted.double(), converted.to(torch.float32)):
        assert all(block.kernel.coefficients.dtype == torch.float16 for block in model.network.interactions)
        assert model.network.network_kernel.blocks[5].dtype == torch.float16
    report = converted.network.interactions[0].kernel.report
    assert report["table_dtype"] == "float16" and 0 < report["rounding_error"] < 1e-2
    assert implementation_of(converted) == "native-cpu" and backend_of(converted) == "tabulated16"
    batch = small_model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm, 0.02, seed=5).float()
    _, f_exact = network_energy_forces(small_model.float(), batch, x)
    _, f_16 = network_energy_forces(converted.float(), batch, x)
    _, f_32 = network_energy_forces(use_backend(small_model, "tabulated").float(), batch, x)
    scale = float(f_exact.pow(2).mean().sqrt())
    error_16, error_32 = (float((f - f_exact).pow(2).mean().sqrt()) / scale for f in (f_16, f_32))
    assert error_16 < FORCE_TOLERANCE["tabulated16"] and error_16 > error_32  # the rounding shows
    with pytest.raises(ValueError, match="overflows float16"):
        half_table(torch.full((4, 4, 2), 7e4, dtype=torch.float64), {})


def test_switch_and_model_management(small_model, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'fastest'"):
        resolve_backend("fastest")
    converted = use_backend(small_model, "tabulated")
    assert backend_of(converted) == "tabulated" and backend_of(small_model) == "reference"
    assert not any(p.requires_grad for p in converted.parameters())
    assert any(p.requires_grad for p in small_model.parameters())  # the original is untouched
    assert converted.network.state_dict().keys() == small_model.network.state_dict().keys()
    with pytest.raises(ValueError, match="convert from a reference model"):
        use_backend(converted, "fused")
    with pytest.raises(ValueError, match="save the reference model"):
        save_checkpoint(converted, tmp_path / "x.pt", {"trained": False})
    loaded = load_model("default", backend="tabulated")
    assert isinstance(loaded.network.interactions[0].kernel, TabulatedKernel)


def test_16bit_weights_survive_dtype_changes(small_model):
    converted = use_backend(small_model, "fused16").float().double()
    layer = converted.network.interactions[0].in2f
    assert isinstance(layer, QuantizedLinear)
    assert layer.bits.dtype == torch.int16 and layer.weight16().dtype == torch.float16
    original = small_model.network.interactions[0].in2f.weight.detach()
    rebuilt = layer.weight16().double() * layer.scale[:, None]
    assert float((rebuilt - original).abs().max() / original.abs().max()) < 2**-10


@pytest.mark.parametrize("backend", ["fused", "tabulated", "tabulated16"])
def test_torchscript_path_matches_eager(small_model, mixed, backend):
    """TorchScript runs the pure-torch path of each kernel (what openmm-torch loads)."""
    batch, positions = mixed
    converted = use_backend(small_model, backend)
    scripted = torch.jit.script(converted)
    e_eager, f_eager = converted.energy_and_forces(positions, batch)
    e_script, f_script = scripted.energy_and_forces(positions, batch)
    torch.testing.assert_close(e_script, e_eager, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(f_script, f_eager, rtol=1e-7, atol=1e-7)
