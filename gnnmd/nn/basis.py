"""Radial basis functions and the cosine cutoff envelope (distances in nm).

Both bases map distances (E,) in nm to features (E, K); the envelope maps
distances to a smooth weight in [0, 1] that reaches 0 with zero slope at the
cutoff, so energies and forces stay continuous as pairs cross it.

Centres and widths are buffers, not constants: a model imported from a library
that trains them (TorchMD-Net's ``trainable_rbf``, SchNetPack's trainable
Gaussians) carries its own values in its state dict.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gnnmd.kernels.filter_spec import cosine_cutoff, expnormal_basis, gaussian_basis

RADIAL_BASES = ("gaussian", "expnormal")


class CosineCutoff(nn.Module):
    """C(r) = ½ (cos(π r / r_c) + 1) for r < r_c, else 0 (r, r_c in nm).

    With a lower cutoff r_l > 0 (TorchMD-Net's ``cutoff_lower``) the envelope is
    ½ (cos(π (2 (r - r_l) / (r_c - r_l) + 1)) + 1) for r_l < r < r_c, else 0: a bump
    that vanishes at both ends.
    """

    def __init__(self, cutoff_nm: float, lower_nm: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= lower_nm < cutoff_nm:
            raise ValueError(f"lower cutoff {lower_nm} nm must lie in [0, {cutoff_nm}) nm")
        self.cutoff_nm = float(cutoff_nm)
        self.lower_nm = float(lower_nm)

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E,) dimensionless."""
        return cosine_cutoff(distances, self.cutoff_nm, self.lower_nm)


class GaussianBasis(nn.Module):
    """exp(-(r - μ_k)² / (2 σ_k²)), K centres μ_k (nm) evenly spaced on [r_l, r_c], σ_k their spacing (nm).

    With ``enveloped`` the basis is multiplied by the cosine cutoff on [r_l, r_c], as mlcg's
    GaussianBasis does when given a CosineCutoff.
    """

    def __init__(
        self, cutoff_nm: float, num_rbf: int, lower_nm: float = 0.0, enveloped: bool = False
    ) -> None:
        super().__init__()
        if num_rbf < 2:
            raise ValueError(f"num_rbf must be at least 2, got {num_rbf}")
        centers = torch.linspace(lower_nm, cutoff_nm, num_rbf)
        self.register_buffer("centers", centers)
        self.register_buffer("widths", (centers[1] - centers[0]).expand(num_rbf).clone())
        self.envelope = CosineCutoff(cutoff_nm, lower_nm) if enveloped else None

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E, K)."""
        basis = gaussian_basis(distances, self.centers, self.widths)
        if self.envelope is not None:
            basis = basis * self.envelope(distances)[:, None]
        return basis

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[override]
        # Checkpoints from before per-centre widths hold none: theirs are the evenly spaced default.
        state_dict.setdefault(prefix + "widths", self.widths.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ExpNormalBasis(nn.Module):
    """PhysNet's exp(-β_k (exp(-α r) - μ_k)²), α = 5 / (r_c - r_l) (1/nm).

    μ_k start evenly spaced on [exp(-α (r_c - r_l)), 1]. With ``enveloped`` the basis is
    multiplied by the cosine cutoff C(r) on [0, r_c], as TorchMD-Net's ExpNormal does.
    """

    def __init__(
        self, cutoff_nm: float, num_rbf: int, lower_nm: float = 0.0, enveloped: bool = False
    ) -> None:
        super().__init__()
        if num_rbf < 2:
            raise ValueError(f"num_rbf must be at least 2, got {num_rbf}")
        self.alpha = 5.0 / (cutoff_nm - lower_nm)
        start = math.exp(-self.alpha * (cutoff_nm - lower_nm))
        self.register_buffer("means", torch.linspace(start, 1.0, num_rbf))
        beta = (2.0 / num_rbf * (1.0 - start)) ** -2
        self.register_buffer("betas", torch.full((num_rbf,), beta))
        self.envelope = CosineCutoff(cutoff_nm) if enveloped else None

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) nm -> (E, K)."""
        basis = expnormal_basis(distances, self.alpha, self.means, self.betas)
        if self.envelope is not None:
            basis = basis * self.envelope(distances)[:, None]
        return basis


def radial_basis(
    kind: str, cutoff_nm: float, num_rbf: int, lower_nm: float = 0.0, enveloped: bool = False
) -> nn.Module:
    """Build the radial basis named ``kind`` (one of :data:`RADIAL_BASES`)."""
    if kind == "gaussian":
        return GaussianBasis(cutoff_nm, num_rbf, lower_nm, enveloped)
    if kind == "expnormal":
        return ExpNormalBasis(cutoff_nm, num_rbf, lower_nm, enveloped)
    raise ValueError(f"unknown radial basis {kind!r}; allowed: {RADIAL_BASES}")
