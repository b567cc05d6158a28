"""SchNet: continuous-filter convolutions over a bead graph (CGSchNet-style).

Energy of bead i after T interaction blocks::

    x_i⁰   = embedding(type_i)
    W(r)   = filter_net(rbf(r)) · C(r)                      (per pair, (F,))
    m_i    = Σ_j  (in2f x_j) ⊙ W(r_ij)                      (continuous-filter conv.)
    x_i^t+1 = x_i^t + dense(act(f2out(m_i)))
    E      = Σ_i readout(x_i^T)

Distances in nm, energies in kJ/mol. The filter depends on the distance only,
so it is evaluated once per unordered pair and used in both directions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gnnmd.nn.basis import CosineCutoff, radial_basis

ACTIVATIONS = ("tanh", "ssp", "silu")


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
    raise ValueError(f"unknown activation {name!r}; allowed: {ACTIVATIONS}")


class InteractionBlock(nn.Module):
    """One continuous-filter convolution with its residual update."""

    def __init__(self, hidden_channels: int, num_filters: int, num_rbf: int, act: str) -> None:
        super().__init__()
        self.filter_net = nn.Sequential(
            nn.Linear(num_rbf, num_filters), activation(act), nn.Linear(num_filters, num_filters)
        )
        self.in2f = nn.Linear(hidden_channels, num_filters, bias=False)
        self.f2out = nn.Linear(num_filters, hidden_channels)
        self.act = activation(act)
        self.dense = nn.Linear(hidden_channels, hidden_channels)

    def forward(self, x: Tensor, rbf: Tensor, envelope: Tensor, pairs: Tensor) -> Tensor:
        """Update bead features.

        Args:
            x: (N, H) bead features.
            rbf: (E, K) radial basis of the E pairs i<j.
            envelope: (E,) cutoff envelope.
            pairs: (2, E) int64 (i, j).
        Returns:
            (N, H) updated features.
        """
        filters = self.filter_net(rbf) * envelope[:, None]
        h = self.in2f(x)
        i, j = pairs[0], pairs[1]
        aggregated = torch.zeros_like(h)
        aggregated.index_add_(0, i, h.index_select(0, j) * filters)
        aggregated.index_add_(0, j, h.index_select(0, i) * filters)
        return x + self.dense(self.act(self.f2out(aggregated)))


class SchNet(nn.Module):
    """The SchNet network: bead energies from types and pair distances.

    Args:
        num_types: size of the bead-type vocabulary.
        hidden_channels: width of bead features.
        num_filters: width of the continuous filters.
        num_interactions: number of interaction blocks.
        num_rbf: number of radial basis functions.
        cutoff_nm: interaction cutoff in nm.
        rbf: radial basis kind, "gaussian" or "expnormal".
        act: activation, "tanh", "ssp" or "silu".
    """

    def __init__(
        self,
        num_types: int,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 3,
        num_rbf: int = 50,
        cutoff_nm: float = 2.0,
        rbf: str = "gaussian",
        act: str = "tanh",
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_types, hidden_channels)
        self.basis = radial_basis(rbf, cutoff_nm, num_rbf)
        self.envelope = CosineCutoff(cutoff_nm)
        self.interactions = nn.ModuleList(
            [InteractionBlock(hidden_channels, num_filters, num_rbf, act) for _ in range(num_interactions)]
        )
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2),
            activation(act),
            nn.Linear(hidden_channels // 2, 1),
        )

    def forward(self, types: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """Per-bead energies.

        Args:
            types: (N,) int64 bead types.
            pairs: (2, E) int64 interacting pairs i<j (inside the cutoff).
            distances: (E,) nm.
        Returns:
            (N,) kJ/mol, the network's energy contribution of each bead.
        """
        x = self.embedding(types)
        rbf = self.basis(distances)
        envelope = self.envelope(distances)
        for block in self.interactions:
            x = block(x, rbf, envelope, pairs)
        return self.readout(x).squeeze(-1)
