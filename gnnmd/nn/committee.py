"""A committee of potentials: where their forces disagree, the models are extrapolating.

K models trained on the same data with different seeds agree where the data
constrained them and drift apart elsewhere. With F_k,i the force of member k on
bead i (kJ/mol/nm) and F̄_i the members' mean, the disagreement of bead i is the
(population) standard deviation of the K force vectors,

    σ_i = sqrt( (1/K) Σ_k |F_k,i − F̄_i|² ) = sqrt( Σ_{k<l} |F_k,i − F_l,i|² ) / K,

so two members give σ_i = |F_1,i − F_2,i| / 2. Per graph (replica) the committee
reports the RMS of σ_i over the graph's beads and the largest σ_i. Energies are
not compared: force matching fixes a member's energy only up to a constant.

One packed batch serves every member, so members must share the bead-type
vocabulary (the embedding order) and the exclusion order (the candidate pairs);
cutoffs, widths and priors may differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from gnnmd.errors import BeadTypeError, CommitteeError
from gnnmd.graph import GraphBatch
from gnnmd.nn.potential import CGPotential
from gnnmd.topology import CGTopology


@dataclass(frozen=True)
class CommitteeForces:
    """One committee evaluation of G graphs, N beads in all; every value in kJ/mol/nm.

    Attributes:
        mean_forces: (N, 3) the members' mean force.
        bead_disagreement: (N,) σ_i, the standard deviation of the members' force vectors.
        rms: (G,) RMS of σ_i over each graph's beads.
        max: (G,) largest σ_i in each graph.
    """

    mean_forces: Tensor
    bead_disagreement: Tensor
    rms: Tensor
    max: Tensor


def force_disagreement(forces: Tensor, graph_index: Tensor, num_graphs: int) -> CommitteeForces:
    """Committee statistics of member forces (K, N, 3) kJ/mol/nm; ``graph_index`` (N,) gives bead -> graph."""
    count = forces.shape[0]
    first, second = torch.triu_indices(count, count, offset=1, device=forces.device)
    # Pairwise differences rather than deviations from the mean: identical members give exactly 0.
    squared = (forces[first] - forces[second]).square().sum(dim=(0, 2))
    sigma = squared.sqrt() / count
    zeros = sigma.new_zeros(num_graphs)
    beads = zeros.index_add(0, graph_index, torch.ones_like(sigma))
    rms = (zeros.index_add(0, graph_index, sigma.square()) / beads).sqrt()
    largest = zeros.scatter_reduce(0, graph_index, sigma, reduce="amax")  # σ >= 0: starting at 0 is safe
    return CommitteeForces(forces.mean(dim=0), sigma, rms, largest)


def _name(model: CGPotential, index: int) -> str:
    return str(getattr(model, "source", None) or f"member {index}")


class Committee:
    """K >= 2 potentials evaluated together on one packed batch.

    Args:
        members: the models (e.g. from :func:`gnnmd.models.load_model`), in eval mode.
        names: how messages name the members (default: each model's file, else "member k").
    """

    def __init__(self, members: Sequence[CGPotential], names: Sequence[str] | None = None) -> None:
        self.members = list(members)
        self.names = [_name(m, k) for k, m in enumerate(self.members)] if names is None else list(names)
        if len(self.members) < 2:
            raise CommitteeError(f"a committee needs at least 2 models, got {len(self.members)} {self.names}")
        if len(self.names) != len(self.members):
            raise ValueError(f"{len(self.names)} names for {len(self.members)} committee members")
        self._check_compatible()

    def _check_compatible(self) -> None:
        reference, first = self.members[0], self.names[0]
        for member, name in zip(self.members[1:], self.names[1:], strict=True):
            if member.vocabulary != reference.vocabulary:
                extra = sorted(set(member.vocabulary) ^ set(reference.vocabulary))
                detail = f"types in one only: {extra}" if extra else "same types in another order"
                raise CommitteeError(
                    f"committee members {first} and {name} have different bead-type vocabularies "
                    f"({len(reference.vocabulary)} and {len(member.vocabulary)} types; {detail}); "
                    "train every member on data with the same bead types"
                )
            if member.config.exclusion_order != reference.config.exclusion_order:
                raise CommitteeError(
                    f"committee members {first} and {name} exclude different bonded pairs "
                    f"(exclusion_order {reference.config.exclusion_order} and "
                    f"{member.config.exclusion_order}); one packed batch cannot serve both"
                )

    def pack(self, topologies: Sequence[CGTopology], device: torch.device | str | None = None) -> GraphBatch:
        """The batch of ``topologies`` for all members; CommitteeError names a member that cannot pack it."""
        batches = []
        for member, name in zip(self.members, self.names, strict=True):
            try:
                batches.append(member.pack(topologies, device))
            except BeadTypeError as error:
                message = f"committee member {name} cannot pack these topologies: {error}"
                raise CommitteeError(message) from error
        return batches[0]  # the same for all: shared vocabulary and exclusion order

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Committee:
        """Move every member (in place) to ``device`` and ``dtype``; returns self."""
        for member in self.members:
            member.to(device=device, dtype=dtype)
        return self

    def evaluate(self, positions: Tensor, batch: GraphBatch) -> CommitteeForces:
        """Force statistics at ``positions`` (N, 3) nm (the members' dtype) for a batch from :meth:`pack`."""
        with torch.enable_grad():  # forces are gradients, also when the caller is in no_grad
            forces = [member.energy_and_forces(positions.detach(), batch)[1] for member in self.members]
        return force_disagreement(torch.stack(forces), batch.graph_index, int(batch.ptr.shape[0]) - 1)
