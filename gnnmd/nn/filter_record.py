"""Reading a network's parts off its modules as plain records for the kernels.

The records and the arithmetic they stand for are defined with the kernels
(:mod:`gnnmd.kernels.filter_spec`, :mod:`gnnmd.kernels.tabulated_network`);
:func:`filter_record` (one block's filter) and :func:`network_record` (a tabulated network's
blocks and readout) are the one place that reads them off the network's modules, so kernels
never reach into the network's classes.
"""

from __future__ import annotations

from torch import Tensor, nn

from gnnmd.kernels.filter_spec import ACTIVATIONS, FilterRecord, activation
from gnnmd.kernels.tabulated_network import NetworkRecord
from gnnmd.nn.basis import CosineCutoff, ExpNormalBasis, GaussianBasis


def activation_name(module: nn.Module) -> str:
    """The name (as :func:`gnnmd.kernels.filter_spec.activation` takes it) of an activation module."""
    for name in ACTIVATIONS:
        if type(activation(name)) is type(module):
            return name
    raise ValueError(f"filter activation {type(module).__name__} is none of {ACTIVATIONS}")


def filter_record(filter_net: nn.Sequential, basis: nn.Module, envelope: CosineCutoff) -> FilterRecord:
    """The record of a filter network (Linear [, activation, Linear]) on ``basis`` with ``envelope``."""
    modules = list(filter_net)
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    activations = [m for m in modules if not isinstance(m, nn.Linear)]
    if len(modules) not in (1, 3) or len(linears) != (len(modules) + 1) // 2:
        raise ValueError(f"a filter network is Linear or Linear, activation, Linear; got {filter_net}")
    layers = tuple(
        (layer.weight.detach().clone(), _bias(layer).detach().clone()) for layer in linears
    )
    inner = getattr(basis, "envelope", None)
    basis_envelope = (inner.cutoff_nm, inner.lower_nm) if inner is not None else None
    if isinstance(basis, GaussianBasis):
        kind, centers, widths, alpha = "gaussian", basis.centers, basis.widths, 0.0
    elif isinstance(basis, ExpNormalBasis):
        kind, centers, widths, alpha = "expnormal", basis.means, basis.betas, float(basis.alpha)
    else:
        raise ValueError(f"radial basis {type(basis).__name__} is neither Gaussian nor ExpNormal")
    return FilterRecord(
        basis=kind,
        centers=centers.detach().clone(),
        widths=widths.detach().clone(),
        alpha=alpha,
        basis_envelope=basis_envelope,
        layers=layers,
        activation=activation_name(activations[0]) if activations else None,
        cutoff_nm=envelope.cutoff_nm,
        lower_nm=envelope.lower_nm,
    )


def _bias(layer: nn.Linear) -> Tensor:
    return layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.out_features)


def network_record(network: nn.Module) -> NetworkRecord:
    """The tabulated ``network``'s blocks and readout as plain values (what the network op reads)."""
    blocks, spacings, cutoffs = [], [], []
    for block in network.interactions:
        kernel = block.kernel
        blocks.append([block.in2f.weight, block.f2out.weight, block.f2out.bias, block.dense.weight,
                       block.dense.bias, kernel.coefficients])  # fmt: skip
        spacings.append(kernel.inv_spacing)
        cutoffs.append(kernel.cutoff_nm)
    layers = list(network.readout)
    linear, acts = layers[0::2], layers[1::2]
    readout = [t for layer in linear for t in (layer.weight, layer.bias)]
    act = activation_name(network.interactions[0].act) if len(network.interactions) else "tanh"
    readout_act = activation_name(acts[0]) if acts else act
    if any(activation_name(block.act) != act for block in network.interactions) or any(
        activation_name(module) != readout_act for module in acts
    ):
        raise ValueError("the network op takes one activation for the blocks and one for the readout")
    return NetworkRecord(blocks, spacings, cutoffs, readout, act, readout_act)
