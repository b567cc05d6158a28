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

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from gnnmd.kernels.filter_spec import FilterRecord, activation
from gnnmd.kernels.reference import ReferenceKernel, aggregate_pairs
from gnnmd.nn.basis import CosineCutoff, radial_basis
from gnnmd.nn.chirality import ChiralInput
from gnnmd.nn.filter_record import filter_record


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


class NeighborEmbedding(nn.Module):
    """TorchMD-Net's neighbour embedding: x_i ← combine([x_i, Σ_j (proj(rbf(r_ij)) · C(r_ij)) ⊙ e(z_j)]).

    A second type embedding e, summed over neighbours through a linear filter of
    the radial basis, and merged with the bead's own features. The sum has the
    form of a continuous-filter convolution (a filter that depends on distance
    alone), so every kernel backend computes it like an interaction block's.
    """

    def __init__(self, num_types: int, hidden_channels: int, num_rbf: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_types, hidden_channels)
        #: The filter W(r) = filter_net(rbf(r)) · C(r); one linear layer here.
        self.filter_net = nn.Sequential(nn.Linear(num_rbf, hidden_channels))
        self.combine = nn.Linear(2 * hidden_channels, hidden_channels)
        self.kernel: nn.Module = ReferenceKernel()
        self.uses_basis = True

    def forward(
        self, x: Tensor, types: Tensor, rbf: Tensor, envelope: Tensor, pairs: Tensor, distances: Tensor
    ) -> Tensor:
        """(N, H) features from (N, H) features and (N,) types; pairs as for :class:`InteractionBlock`."""
        h = self.embedding(types)
        if self.uses_basis:
            aggregated = aggregate_pairs(h, self.filter_net(rbf) * envelope[:, None], pairs)
        else:
            aggregated = self.kernel(h, pairs, distances)
        return self.combine(torch.cat([x, aggregated], dim=1))


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
        act: activation, one of :data:`ACTIVATIONS`.
        lower_cutoff_nm: lower cutoff in nm (pairs closer contribute nothing).
        rbf_envelope: multiply the basis by the cosine cutoff (TorchMD-Net's ExpNormal).
        neighbor_embedding: add TorchMD-Net's neighbour embedding before the blocks.
        readout_hidden_layers: extra (H/2 → H/2) layers in the readout MLP.
        readout_act: the readout's activation (default: ``act``).
        readout_widths: the readout's hidden widths (empty: H/2, then ``readout_hidden_layers`` of H/2).
        chiral_features: hold a :class:`~gnnmd.nn.chirality.ChiralInput` (its caller, which has the
            positions, evaluates it and passes the result as ``initial``).
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
        lower_cutoff_nm: float = 0.0,
        rbf_envelope: bool = False,
        neighbor_embedding: bool = False,
        readout_hidden_layers: int = 0,
        readout_act: Optional[str] = None,
        readout_widths: Sequence[int] = (),
        chiral_features: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_types, hidden_channels)
        #: Reflection-sensitive input from dihedrals (None: the network sees distances only).
        self.chirality = ChiralInput(hidden_channels) if chiral_features else None
        self.basis = radial_basis(rbf, cutoff_nm, num_rbf, lower_cutoff_nm, rbf_envelope)
        self.envelope = CosineCutoff(cutoff_nm, lower_cutoff_nm)
        self.neighbor_embedding = (
            NeighborEmbedding(num_types, hidden_channels, num_rbf) if neighbor_embedding else None
        )
        self.interactions = nn.ModuleList(
            [InteractionBlock(hidden_channels, num_filters, num_rbf, act) for _ in range(num_interactions)]
        )
        #: The kernel backend (see :mod:`gnnmd.kernels`); only ``reference`` evaluates the basis here.
        self.backend = "reference"
        #: Why a requested fast kernel fell back to its pure-torch twin (``allow_fallback``), or None.
        self.fallback: Optional[str] = None
        #: The blocks and readout as one op on CPUs (tabulated backend, native; see
        #: :mod:`gnnmd.kernels.tabulated_network`), or None: the blocks run one by one.
        self.network_kernel: Optional[nn.Module] = None
        widths = list(readout_widths) or [hidden_channels // 2] * (1 + readout_hidden_layers)
        readout_act = readout_act or act
        layers: list[nn.Module] = []
        for width_in, width_out in zip([hidden_channels] + widths[:-1], widths, strict=True):
            layers += [nn.Linear(width_in, width_out), activation(readout_act)]
        self.readout = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        #: Reference energy of each bead type, kJ/mol: fitted to the data's energies before
        #: energy training (zero for force-only models, whose energy zero is arbitrary).
        self.register_buffer("type_energy", torch.zeros(num_types))
        #: Energy added once per molecule, kJ/mol (an imported model's data mean; else zero).
        self.register_buffer("molecule_energy", torch.zeros(()))

    def convolutions(self) -> list[nn.Module]:
        """The modules whose pair sums a kernel backend computes: the neighbour embedding, then the blocks."""
        front = [self.neighbor_embedding] if self.neighbor_embedding is not None else []
        return front + list(self.interactions)

    @torch.jit.unused
    def filter_records(self) -> list[FilterRecord]:
        """The filters of :meth:`convolutions` as plain values, in the same order (what kernels read)."""
        return [filter_record(module.filter_net, self.basis, self.envelope) for module in self.convolutions()]

    def forward(
        self, types: Tensor, pairs: Tensor, distances: Tensor, initial: Optional[Tensor] = None
    ) -> Tensor:
        """Per-bead energies.

        Args:
            types: (N,) int64 bead types.
            pairs: (2, E) int64 interacting pairs i<j (inside the cutoff).
            distances: (E,) nm.
            initial: optional (N, H) added to the type embeddings (e.g. chiral input).
        Returns:
            (N,) kJ/mol, the network's energy contribution of each bead
            (:attr:`molecule_energy` not included: it is added per molecule).
        """
        x = self.embedding(types)
        if initial is not None:
            x = x + initial
        if self.backend == "reference":
            rbf = self.basis(distances)
            envelope = self.envelope(distances)
        else:
            # The backend's kernels take the distances themselves; nothing per edge is stored here.
            rbf = distances.new_zeros(0, 0)
            envelope = distances.new_zeros(0)
        if self.neighbor_embedding is not None:
            x = self.neighbor_embedding(x, types, rbf, envelope, pairs, distances)
        if self.network_kernel is not None and not x.is_cuda:
            return self.network_kernel(x, pairs, distances) + self.type_energy[types]
        for block in self.interactions:
            x = block(x, rbf, envelope, pairs, distances)
        return self.readout(x).squeeze(-1) + self.type_energy[types]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[override]
        # Checkpoints from before per-type and per-molecule reference energies hold none: theirs are zero.
        state_dict.setdefault(prefix + "type_energy", torch.zeros_like(self.type_energy))
        state_dict.setdefault(prefix + "molecule_energy", torch.zeros_like(self.molecule_energy))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
