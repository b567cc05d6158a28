"""The registered op ``gnnmd::tabulated_network`` (a tabulated network's blocks and readout in one op):
opcheck, float64 gradcheck, equal to its pure-torch twin on random graphs for every activation, equal
to the same model's blocks run one by one (random and real inputs, forward and backward), used by
converted models and by TorchScript export.

Tolerances: against the twin (the same arithmetic in plain torch) float64 1e-11 of the largest
value, float32 1e-5; against the blocks one by one (the same ops, other order of sums) float64 1e-11
and float32 1e-5 of the force RMS.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gnnmd.export import export_potential
from gnnmd.kernels import ops
from gnnmd.kernels.filter_spec import ACTIVATIONS
from gnnmd.kernels.tabulated import TabulatedKernel, tabulate_block
from gnnmd.kernels.tabulated_network import NativeTabulatedNetwork, NetworkRecord, TabulatedNetwork
from gnnmd.nn.backends import use_backend
from gnnmd.nn.filter_record import network_record
from gnnmd.nn.schnet import SchNet
from tests.conftest import perturbed
from tests.unit.test_ops import CASES, OpCounter, graph


@pytest.fixture(autouse=True)
def _library():
    ops.load()


def record(act: str, readout_act: str, dtype=torch.float64, blocks: int = 2) -> NetworkRecord:
    """A random network of width 8 with ``blocks`` spline-tabulated blocks, cutoff 1 nm."""
    torch.manual_seed(0)
    net = SchNet(4, hidden_channels=8, num_filters=8, num_interactions=blocks, num_rbf=6, cutoff_nm=1.0,
                 act=act, readout_act=readout_act, readout_widths=(6, 5)).double()  # fmt: skip
    converted = copy.deepcopy(net)
    for block, filters in zip(converted.interactions, net.filter_records(), strict=True):
        coefficients, _ = tabulate_block(filters, points=64)
        block.kernel = TabulatedKernel(coefficients, 1.0)
    plain = network_record(converted)
    cast = [[t.to(dtype) for t in block] for block in plain.blocks]
    return NetworkRecord(cast, plain.inv_spacings, plain.cutoffs_nm, [t.to(dtype) for t in plain.readout],
                         plain.act, plain.readout_act)  # fmt: skip


def op_args(network: NativeTabulatedNetwork, x, pairs, r) -> tuple:
    return (x, pairs, r, network.blocks, network.inv_spacings, network.cutoffs_nm, network.readout,
            network.act, network.readout_act)  # fmt: skip


def inputs(case: str, dtype):
    sizes, isolated, spread = CASES[case]
    x, pairs, r = graph(sizes, isolated, 8, dtype, seed=len(case), spread=spread)
    return x, pairs, (r + 1.0 if case == "all beyond the cutoff" else r)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_opcheck(case, dtype):
    network = NativeTabulatedNetwork(record("tanh", "silu", dtype))
    x, pairs, r = inputs(case, dtype)
    args = op_args(network, x.requires_grad_(True), pairs, r.requires_grad_(True))
    torch.library.opcheck(torch.ops.gnnmd.tabulated_network.default, args)
    energies, saved = torch.ops.gnnmd.tabulated_network_saved(*args)
    grad = torch.randn_like(energies)
    plain = (args[0].detach(), pairs, args[2].detach(), *args[3:])
    torch.library.opcheck(torch.ops.gnnmd.tabulated_network_saved.default, plain)
    for x0_grad in (True, False):
        backward_args = (grad, saved, *plain, x0_grad)
        torch.library.opcheck(torch.ops.gnnmd.tabulated_network_backward.default, backward_args)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-11), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_equals_the_torch_twin_forward_and_backward(act, case, dtype, tolerance):
    readout_act = ACTIVATIONS[(ACTIVATIONS.index(act) + 1) % len(ACTIVATIONS)]
    plain = record(act, readout_act, dtype)
    x, pairs, r = inputs(case, dtype)
    upstream = torch.randn(x.shape[0], dtype=dtype)
    results = []
    for network in (TabulatedNetwork(plain), NativeTabulatedNetwork(plain)):
        xx, rr = x.clone().requires_grad_(True), r.clone().requires_grad_(True)
        energies = network(xx, pairs, rr)
        results.append([energies.detach(), *torch.autograd.grad(energies, (xx, rr), upstream)])
    for expected, got in zip(*results, strict=True):
        scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-30)
        assert float((got - expected).abs().max() if got.numel() else 0.0) <= tolerance * scale


def test_gradcheck_and_no_second_derivatives():
    network = NativeTabulatedNetwork(record("ssp", "tanh"))
    x, pairs, r = inputs("mixed graphs", torch.float64)
    r = 0.05 + 0.9 * r / 1.3  # inside the cutoff, away from its edge

    def call(x, r):
        return network(x, pairs, r)

    args = (x.requires_grad_(True), r.requires_grad_(True))
    assert torch.autograd.gradcheck(call, args, eps=1e-6, atol=1e-7, rtol=1e-5)
    with pytest.raises(RuntimeError, match="gives first derivatives only"):
        torch.autograd.gradgradcheck(call, args)


def test_bad_inputs_are_named():
    network = NativeTabulatedNetwork(record("tanh", "tanh"))
    x, pairs, r = inputs("mixed graphs", torch.float64)
    args = list(op_args(network, x, pairs, r))
    with pytest.raises(RuntimeError, match="unknown activation 'relu'"):
        torch.ops.gnnmd.tabulated_network(*args[:7], "relu", "tanh")
    with pytest.raises(RuntimeError, match="6 tensors per block expected, got 11"):
        torch.ops.gnnmd.tabulated_network(*args[:3], network.blocks[:-1], *args[4:])
    with pytest.raises(RuntimeError, match=r"dtype \(spline tables may also be float16\) and be fixed"):
        trainable = [network.blocks[0].clone().requires_grad_(True), *network.blocks[1:]]
        torch.ops.gnnmd.tabulated_network(*args[:3], trainable, *args[4:])
    with pytest.raises(RuntimeError, match=r"features must be \(N, H\)"):
        torch.ops.gnnmd.tabulated_network(x[0], *args[1:])


def test_converted_models_use_the_op_and_equal_their_blocks_one_by_one(small_model, chignolin):
    """Real input: chignolin × 3, perturbed; float64 and float32, forward and backward."""
    converted = use_backend(small_model, "tabulated")
    assert isinstance(converted.network.network_kernel, NativeTabulatedNetwork)
    blockwise = copy.deepcopy(converted)
    blockwise.network.network_kernel = None
    for dtype, tolerance in ((torch.float64, 1e-11), (torch.float32, 1e-5)):
        fast, slow = copy.deepcopy(converted).to(dtype), copy.deepcopy(blockwise).to(dtype)
        batch = fast.pack([chignolin.topology] * 3)
        x = perturbed(np.tile(chignolin.positions_nm, (3, 1)), seed=4).to(dtype)
        with OpCounter() as counter:
            e_fast, f_fast = fast.energy_and_forces(x, batch)
        assert counter.calls["gnnmd::tabulated_network_saved"] == 1
        assert counter.calls["gnnmd::tabulated_network_backward"] == 1
        e_slow, f_slow = slow.energy_and_forces(x, batch)
        scale = float(f_slow.pow(2).mean().sqrt())
        assert float((f_fast - f_slow).abs().max()) <= tolerance * scale
        assert float((e_fast - e_slow).abs().max()) <= tolerance * float(e_slow.abs().max())


def test_torchscript_export_records_the_op(small_model, chignolin):
    converted = use_backend(small_model, "tabulated")
    module = export_potential(converted, chignolin.topology, forces=True, dtype=torch.float64)
    assert "gnnmd::tabulated_network" in str(module.inlined_graph)
    x = torch.as_tensor(chignolin.positions_nm, dtype=torch.float64)
    blockwise = copy.deepcopy(converted)
    blockwise.network.network_kernel = None
    reference = export_potential(blockwise, chignolin.topology, forces=True, dtype=torch.float64)
    (e1, f1), (e0, f0) = module(x), reference(x)
    torch.testing.assert_close(e1, e0, rtol=1e-11, atol=0)
    torch.testing.assert_close(f1, f0, rtol=0, atol=1e-11 * float(f0.pow(2).mean().sqrt()))


def test_chiral_input_takes_the_gradient_through_x0(chignolin):
    """With chiral input, x0 depends on the positions: dE/dx0 flows back through the op (float64)."""
    from tests.unit.test_chirality import model_for

    model = model_for(chignolin.topology, True).double()
    converted = use_backend(model, "tabulated")
    assert isinstance(converted.network.network_kernel, NativeTabulatedNetwork)
    blockwise = copy.deepcopy(converted)
    blockwise.network.network_kernel = None
    batch = model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm, seed=5)
    for positions in (x, x * torch.tensor([-1.0, 1.0, 1.0], dtype=x.dtype)):
        e_fast, f_fast = converted.energy_and_forces(positions, batch)
        e_slow, f_slow = blockwise.energy_and_forces(positions, batch)
        assert float((f_fast - f_slow).abs().max()) <= 1e-11 * float(f_slow.pow(2).mean().sqrt())
        assert float((e_fast - e_slow).abs().max()) <= 1e-11 * float(e_slow.abs().max())
