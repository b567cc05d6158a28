"""Reading a block's filter off the network's modules as a plain :class:`FilterRecord`.

The record and the arithmetic it stands for are defined with the kernels
(:mod:`gnnmd.kernels.filter_spec`); :func:`filter_record` is the one place that reads
them off the network's modules, so kernels never reach into the network's classes.
"""

from __future__ import annotations

from torch import Tensor, nn

from gnnmd.kernels.filter_spec import ACTIVATIONS, FilterRecord, activation
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
