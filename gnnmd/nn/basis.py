"""Radial basis functions and the cosine cutoff envelope (distances in nm).

Both bases map distances (E,) in nm to features (E, K); the envelope maps
distances to a smooth weight in [0, 1] that reaches 0 with zero slope at the
cutoff, so energies and forces stay continuous as pairs cross it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

RADIAL_BASES = ("gaussian", "expnormal")


class CosineCutoff(nn.Module):
    """C(r) = ½ (cos(π r / r_c) + 1) for r < r_c, else 0 (r, r_c in nm)."""

    def __init__(self, cutoff_nm: float) -> None:
        super().__init__()
        self.cutoff_nm = float(cutoff_nm)

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E,) dimensionless."""
        envelope = 0.5 * (torch.cos(distances * (math.pi / self.cutoff_nm)) + 1.0)
        return envelope * (distances < self.cutoff_nm).to(distances.dtype)


class GaussianBasis(nn.Module):
    """exp(-(r - μ_k)² / (2 σ²)) with K centres μ_k evenly spaced on [0, r_c] and σ their spacing."""

    def __init__(self, cutoff_nm: float, num_rbf: int) -> None:
        super().__init__()
        if num_rbf < 2:
            raise ValueError(f"num_rbf must be at least 2, got {num_rbf}")
        centers = torch.linspace(0.0, cutoff_nm, num_rbf)
        width = float(centers[1] - centers[0])
        self.register_buffer("centers", centers)
        self.coefficient = -0.5 / (width * width)

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E, K)."""
        offset = distances[:, None] - self.centers.to(distances.dtype)
        return torch.exp(self.coefficient * offset * offset)


class ExpNormalBasis(nn.Module):
    """PhysNet's exp(-β_k (exp(-α r) - μ_k)²), α = 5 / r_c, μ_k evenly spaced on [exp(-α r_c), 1]."""

    def __init__(self, cutoff_nm: float, num_rbf: int) -> None:
        super().__init__()
        if num_rbf < 2:
            raise ValueError(f"num_rbf must be at least 2, got {num_rbf}")
        self.alpha = 5.0 / cutoff_nm
        start = math.exp(-self.alpha * cutoff_nm)
        self.register_buffer("means", torch.linspace(start, 1.0, num_rbf))
        beta = (2.0 / num_rbf * (1.0 - start)) ** -2
        self.register_buffer("betas", torch.full((num_rbf,), beta))

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E, K)."""
        shifted = torch.exp(-self.alpha * distances)[:, None] - self.means.to(distances.dtype)
        return torch.exp(-self.betas.to(distances.dtype) * shifted * shifted)


def radial_basis(kind: str, cutoff_nm: float, num_rbf: int) -> nn.Module:
    """Build the radial basis named ``kind`` (one of :data:`RADIAL_BASES`)."""
    if kind == "gaussian":
        return GaussianBasis(cutoff_nm, num_rbf)
    if kind == "expnormal":
        return ExpNormalBasis(cutoff_nm, num_rbf)
    raise ValueError(f"unknown radial basis {kind!r}; allowed: {RADIAL_BASES}")
