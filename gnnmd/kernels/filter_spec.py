"""A block's continuous filter as plain values, and the arithmetic that defines it.

W(r) = layers[-1](act(... layers[0](basis(r)))) · C(r): a radial basis (Gaussian or
ExpNormal, optionally multiplied by a cosine envelope of its own), one or two linear layers
with an activation between them, and the cosine cutoff C on [lower, cutoff].

This is the contract between the model and the kernels: :mod:`gnnmd.nn` builds its modules
on these functions and reads a :class:`FilterRecord` off each block
(:func:`gnnmd.nn.filter_record.filter_record`); every kernel backend builds its own
arithmetic from the record and never reaches into the network's classes. Distances in nm;
ExpNormal's α in 1/nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn


def cosine_cutoff(distances: Tensor, cutoff_nm: float, lower_nm: float = 0.0) -> Tensor:
    """(E,) nm -> (E,) the envelope of :class:`CosineCutoff`."""
    inside = (distances < cutoff_nm).to(distances.dtype)
    if lower_nm > 0.0:
        width = cutoff_nm - lower_nm
        phase = math.pi * (2.0 * (distances - lower_nm) / width + 1.0)
        above = (distances > lower_nm).to(distances.dtype)
        return 0.5 * (torch.cos(phase) + 1.0) * inside * above
    return 0.5 * (torch.cos(distances * (math.pi / cutoff_nm)) + 1.0) * inside


def gaussian_basis(distances: Tensor, centers: Tensor, widths: Tensor) -> Tensor:
    """(E,) nm -> (E, K): exp(-(r - μ_k)² / (2 σ_k²)) for centres μ (K,) and widths σ (K,) in nm."""
    offset = distances[:, None] - centers.to(distances.dtype)
    widths = widths.to(distances.dtype)
    return torch.exp((-0.5 / (widths * widths)) * offset * offset)


def expnormal_basis(distances: Tensor, alpha: float, means: Tensor, betas: Tensor) -> Tensor:
    """(E,) nm -> (E, K): exp(-β_k (exp(-α r) - μ_k)²), α in 1/nm."""
    shifted = torch.exp(-alpha * distances)[:, None] - means.to(distances.dtype)
    return torch.exp(-betas.to(distances.dtype) * shifted * shifted)


ACTIVATIONS = ("tanh", "ssp", "silu", "sigmoid", "mish")


class ShiftedSoftplus(nn.Module):
    """softplus(x) - log 2: zero at the origin, SchNet's original activation."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.softplus(x) - math.log(2.0)


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "tanh":
        return nn.Tanh()
    if name == "ssp":
        return ShiftedSoftplus()
    if name == "silu":
        return nn.SiLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "mish":
        return nn.Mish()
    raise ValueError(f"unknown activation {name!r}; allowed: {ACTIVATIONS}")


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
        activation: between two layers, one of :data:`ACTIVATIONS` (None for one).
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
