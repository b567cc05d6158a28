"""A block's continuous filter as plain values: what the kernel backends read of a network.

W(r) = layers[-1](act(... layers[0](basis(r)))) · C(r): a radial basis (Gaussian or
ExpNormal, optionally multiplied by a cosine envelope of its own), one or two linear
layers with an activation between them, and the cosine cutoff C on [lower, cutoff].
:func:`filter_record` reads it off the network's modules once; kernels
(:mod:`gnnmd.kernels`) build their own arithmetic from the record and never reach
into the network's classes. Distances in nm; ExpNormal's α in 1/nm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor, nn

from gnnmd.nn.basis import CosineCutoff, ExpNormalBasis, GaussianBasis


@dataclass(frozen=True)
class FilterRecord:
    """One block's filter (see the module docstring); tensors are detached copies.

    Attributes:
        basis: "gaussian" or "expnormal".
        centers: (K,) Gaussian centres μ in nm, or ExpNormal means μ (dimensionless).
        widths: (K,) Gaussian widths σ in nm, or ExpNormal β (dimensionless).
        alpha: ExpNormal α in 1/nm (0 for Gaussians).
        basis_envelope: (cutoff, lower) in nm of the cosine envelope the basis is multiplied by
            (TorchMD-Net's ExpNormal, mlcg's Gaussians), or None.
        layers: (weight (out, in), bias (out,)) of each linear layer, first to last.
        activation: between two layers, one of :data:`gnnmd.nn.schnet.ACTIVATIONS` (None for one).
        cutoff_nm, lower_nm: the cutoff envelope C(r).
    """

    basis: str
    centers: Tensor
    widths: Tensor
    alpha: float
    basis_envelope: Optional[tuple[float, float]]
    layers: tuple[tuple[Tensor, Tensor], ...]
    activation: Optional[str]
    cutoff_nm: float
    lower_nm: float


def activation_name(module: nn.Module) -> str:
    """The name (as :func:`gnnmd.nn.schnet.activation` takes it) of an activation module."""
    from gnnmd.nn.schnet import ACTIVATIONS, activation

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
