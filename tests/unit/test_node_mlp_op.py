"""The registered op ``gnnmd::node_mlp`` (a bead-wise perceptron with its residual): opcheck, float64
gradcheck, first derivatives only, equal to its pure-torch twin (nn.Linear layers and the network's
activation modules) for every activation, with and without a residual, over several row tiles; bad
input named; used by the tabulated backend for every block and the readout, in the runner and in
TorchScript.

Tolerances against the twin: float64 1e-12 relative to the largest value; float32 1e-5.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gnnmd.kernels import ops, use_backend
from gnnmd.kernels.native_mlp import NativeNodeMLP
from gnnmd.nn.mlp_record import mlp_record
from gnnmd.nn.schnet import ACTIVATIONS, activation
from gnnmd.sim import ReplicaRunner
from tests.conftest import perturbed

ops.load()

#: More rows than one tile of the op (256), so that the tiles and their seams are exercised.
ROWS = 600


def perceptron(act: str, dtype, widths=(16, 24, 8), seed: int = 0):
    """(first, activation module, second): Linear(A, B), the activation, Linear(B, C), frozen."""
    torch.manual_seed(seed)
    first, second = nn.Linear(widths[0], widths[1]), nn.Linear(widths[1], widths[2])
    layers = (first.to(dtype).requires_grad_(False), activation(act), second.to(dtype).requires_grad_(False))
    return layers


def arguments(layers, residual: bool, rows: int = ROWS, dtype=torch.float64):
    first, act, second = layers
    x = torch.randn(rows, first.in_features, dtype=dtype)
    r = torch.randn(rows, second.out_features, dtype=dtype) if residual else None
    name = mlp_record(*layers).activation
    return x, first.weight, first.bias, second.weight, second.bias, r, name


def twin(layers, x, residual):
    first, act, second = layers
    out = second(act(first(x)))
    return out if residual is None else residual + out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("residual", [False, True])
def test_equal_to_the_twin_forward_and_backward(dtype, act, residual):
    layers = perceptron(act, dtype)
    x, w1, b1, w2, b2, r, name = arguments(layers, residual, dtype=dtype)
    # Pre-activations beyond softplus's threshold (20) take its identity branch in both.
    x[:5] *= 40.0
    x.requires_grad_(True)
    if r is not None:
        r.requires_grad_(True)
    inputs = (x,) if r is None else (x, r)
    out = torch.ops.gnnmd.node_mlp(x, w1, b1, w2, b2, r, name)
    expected = twin(layers, x, r)
    grad = torch.randn_like(out)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(out, expected, rtol=0, atol=tolerance * scale)
    wanted = torch.autograd.grad(expected, inputs, grad)
    for got, want in zip(torch.autograd.grad(out, inputs, grad), wanted, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=tolerance * float(want.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [ROWS, 1, 0])
@pytest.mark.parametrize("residual", [False, True])
def test_opcheck(dtype, rows, residual):
    x, w1, b1, w2, b2, r, name = arguments(perceptron("tanh", dtype), residual, rows, dtype)
    torch.library.opcheck(torch.ops.gnnmd.node_mlp.default, (x.requires_grad_(True), w1, b1, w2, b2, r, name))
    forward = (x.detach(), w1, b1, w2, b2, r, name, True)
    torch.library.opcheck(torch.ops.gnnmd.node_mlp_forward.default, forward)
    out, derivative = torch.ops.gnnmd.node_mlp_forward(x.detach(), w1, b1, w2, b2, r, name, True)
    grad = torch.randn_like(out)
    torch.library.opcheck(torch.ops.gnnmd.node_mlp_backward.default, (grad, derivative, w1, w2))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_gradcheck_and_no_second_derivatives(act):
    x, w1, b1, w2, b2, r, name = arguments(perceptron(act, torch.float64), True, rows=300)

    def function(x, r):
        return torch.ops.gnnmd.node_mlp(x, w1, b1, w2, b2, r, name)

    inputs = (x.requires_grad_(True), r.requires_grad_(True))
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.gradgradcheck(function, inputs)


def test_bad_inputs_are_named():
    x, w1, b1, w2, b2, r, name = arguments(perceptron("tanh", torch.float64), True)
    with pytest.raises(RuntimeError, match="unknown activation 'relu'; allowed: tanh"):
        torch.ops.gnnmd.node_mlp(x, w1, b1, w2, b2, r, "relu")
    with pytest.raises(RuntimeError, match=r"weight1 must be \(B, A\) with A = 16"):
        torch.ops.gnnmd.node_mlp(x, w1[:, :3], b1, w2, b2, r, name)
    with pytest.raises(RuntimeError, match=r"residual must be \(600, 8\)"):
        torch.ops.gnnmd.node_mlp(x, w1, b1, w2, b2, r[:10], name)
    with pytest.raises(RuntimeError, match="must share one dtype"):
        torch.ops.gnnmd.node_mlp(x.float(), w1, b1, w2, b2, r, name)
    with pytest.raises(RuntimeError, match="the weights are fixed"):
        torch.ops.gnnmd.node_mlp(x, w1.clone().requires_grad_(True), b1, w2, b2, r, name)


def test_the_module_computes_the_twin_from_its_record():
    layers = perceptron("ssp", torch.float64)
    x, *_, r, _ = arguments(layers, True)
    module = NativeNodeMLP(mlp_record(*layers))
    torch.testing.assert_close(module(x, r), twin(layers, x, r), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module._twin(x, r), twin(layers, x, r), rtol=1e-12, atol=1e-12)
    assert not any(name.startswith("weight") for name in module.state_dict())  # not checkpointed


def test_the_tabulated_backend_runs_blocks_and_readout_through_the_op(small_model, chignolin, villin):
    native = use_backend(small_model, "tabulated")
    network = native.network
    assert all(block.update_kernel is not None for block in network.interactions)
    assert network.readout_kernel is not None
    twin_model = copy.deepcopy(native)
    for block in twin_model.network.interactions:
        block.update_kernel = None
    twin_model.network.readout_kernel = None
    topologies = [chignolin.topology, villin.topology]
    positions = torch.cat([perturbed(chignolin.positions_nm), perturbed(villin.positions_nm, seed=4)])
    runners = [
        ReplicaRunner(m, topologies, positions, dtype=torch.float64, seed=5) for m in (twin_model, native)
    ]
    for runner in runners:
        runner.step(30)
    scale = float(runners[0].positions.abs().max())
    torch.testing.assert_close(runners[1].positions, runners[0].positions, rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(runners[1].energies, runners[0].energies, rtol=1e-10, atol=0)
    assert "gnnmd::node_mlp" in str(torch.jit.script(native).inlined_graph)
    assert "gnnmd::node_mlp" not in str(torch.jit.script(small_model).inlined_graph)
    # A converted model's checkpoint keeps the network's own layers only.
    assert native.state_dict().keys() == small_model.state_dict().keys()


def test_a_deeper_readout_keeps_its_torch_layers(small_model):
    model = copy.deepcopy(small_model)
    hidden = model.network.readout[0].out_features
    model.network.readout = nn.Sequential(
        *model.network.readout[:2], nn.Linear(hidden, hidden), nn.Tanh(), model.network.readout[2]
    ).to(torch.float64)
    native = use_backend(model, "tabulated")
    assert native.network.readout_kernel is None
    assert all(block.update_kernel is not None for block in native.network.interactions)


def test_shifted_softplus_is_zero_at_the_origin():
    layers = perceptron("ssp", torch.float64, widths=(1, 1, 1))
    for parameter, value in zip(layers[0].parameters(), (0.0, 0.0), strict=True):
        parameter.fill_(value)
    layers[2].weight.fill_(1.0)
    layers[2].bias.fill_(0.0)
    x, w1, b1, w2, b2, _, name = arguments(layers, False, rows=3)
    out = torch.ops.gnnmd.node_mlp(x, w1, b1, w2, b2, None, name)
    assert float(out.abs().max()) < 1e-15
