"""SchNet: continuous-filter convolutions over a bead graph (CGSchNet-style).

Energy of bead i after T interaction blocks::

    x_i⁰   = embedding(type_i)
    W(r)   = filter_net(rbf(r)) · C(r)                      (per pair, (F,))
    m_i    = Σ_j  (in2f x_j) ⊙ W(r_ij)                      (continuous-filter conv.)
    x_i^t+1 = x_i^t + dense(act(f2out(m_i)))
    E      = Σ_i readout(x_i^T)

Distances in nm, energies in kJ/mol. The filter depends on the distance only,
so it is evaluated once per unordered pair and used in both directions.

How the convolution is computed is the kernel backend's business
(:mod:`gnnmd.kernels`): the ``reference`` backend below runs the filter network
on the radial basis and aggregates with ``index_add``; the other backends
replace each block's ``kernel`` module and all compute the same function.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from gnnmd.kernels.reference import ReferenceKernel, aggregate_pairs
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
        #: Computes Σ_j W(r_ij) ⊙ h_j from (h, pairs, distances) for non-reference backends.
        self.kernel: nn.Module = ReferenceKernel()
        #: True for the reference backend: filters from the shared radial basis, index_add aggregation.
        self.uses_basis = True

    def forward(self, x: Tensor, rbf: Tensor, envelope: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """Update bead features.

        Args:
            x: (N, H) bead features.
            rbf: (E, K) radial basis of the E pairs i<j (empty unless the backend uses it).
            envelope: (E,) cutoff envelope (empty unless the backend uses it).
            pairs: (2, E) int64 (i, j).
            distances: (E,) nm.
        Returns:
            (N, H) updated features.
        """
        h = self.in2f(x)
        if self.uses_basis:
            filters = self.filter_net(rbf) * envelope[:, None]
            aggregated = aggregate_pairs(h, filters, pairs)
        else:
            aggregated = self.kernel(h, pairs, distances)
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
        #: The kernel backend (see :mod:`gnnmd.kernels`); only ``reference`` evaluates the basis here.
        self.backend = "reference"
        #: Why a requested fast kernel fell back to its pure-torch twin (``allow_fallback``), or None.
        self.fallback: Optional[str] = None
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2),
            activation(act),
            nn.Linear(hidden_channels // 2, 1),
        )
        #: Reference energy of each bead type, kJ/mol: fitted to the data's energies before
        #: energy training (zero for force-only models, whose energy zero is arbitrary).
        self.register_buffer("type_energy", torch.zeros(num_types))

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
        if self.backend == "reference":
            rbf = self.basis(distances)
            envelope = self.envelope(distances)
        else:
            # The backend's kernels take the distances themselves; nothing per edge is stored here.
            rbf = distances.new_zeros(0, 0)
            envelope = distances.new_zeros(0)
        for block in self.interactions:
            x = block(x, rbf, envelope, pairs, distances)
        return self.readout(x).squeeze(-1) + self.type_energy[types]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[override]
        # Checkpoints from before per-type reference energies hold none: theirs are zero.
        state_dict.setdefault(prefix + "type_energy", torch.zeros_like(self.type_energy))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
