"""W(r) from a :class:`~gnnmd.kernels.filter_spec.FilterRecord`: the exact filter, in pure torch.

What the ``fused`` backends evaluate (CPU chunks, TorchScript) and hand to the Triton
kernel, and what the ``tabulated`` backend samples to build its splines. Built from the
record's plain values with torch's own layers, so the kernels never touch the
network's modules. Distances in nm; W dimensionless.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gnnmd.kernels.filter_spec import FilterRecord, activation, cosine_cutoff, expnormal_basis, gaussian_basis
from gnnmd.kernels.quantize import quantize


class FilterFunction(nn.Module):
    """(E,) distances in nm -> (E, F) filters W(r) of one block.

    Args:
        record: the block's filter.
        weight_dtype: None for float weights; torch.float16 or torch.bfloat16 for channel-wise
            16-bit ones (:mod:`gnnmd.kernels.quantize`, the ``fused16`` backend).
    """

    def __init__(self, record: FilterRecord, weight_dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.basis = record.basis
        self.register_buffer("centers", record.centers.clone())
        self.register_buffer("widths", record.widths.clone())
        self.alpha = float(record.alpha)
        self.basis_enveloped = record.basis_envelope is not None
        basis_cutoff, basis_lower = record.basis_envelope or (0.0, 0.0)
        self.basis_cutoff_nm, self.basis_lower_nm = float(basis_cutoff), float(basis_lower)
        self.activation = record.activation or ""
        self.cutoff_nm, self.lower_nm = float(record.cutoff_nm), float(record.lower_nm)
        modules: list[nn.Module] = []
        for index, (weight, bias) in enumerate(record.layers):
            layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
            with torch.no_grad():
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)
            modules.append(layer)
            if index + 1 < len(record.layers):
                modules.append(activation(record.activation or ""))
        self.layers = nn.Sequential(*modules)
        if weight_dtype is not None:
            quantize(self.layers, weight_dtype)

    def radial_basis(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E, K)."""
        if self.basis == "gaussian":
            values = gaussian_basis(distances, self.centers, self.widths)
        else:
            values = expnormal_basis(distances, self.alpha, self.centers, self.widths)
        if self.basis_enveloped:
            values = values * cosine_cutoff(distances, self.basis_cutoff_nm, self.basis_lower_nm)[:, None]
        return values

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E, F)."""
        envelope = cosine_cutoff(distances, self.cutoff_nm, self.lower_nm)
        return self.layers(self.radial_basis(distances)) * envelope[:, None]
