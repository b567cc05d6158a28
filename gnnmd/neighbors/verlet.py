"""Verlet-skin neighbour lists, one per graph of a packed batch, exact by construction.

Each graph keeps the candidate pairs (from :func:`gnnmd.graph.pack`, bonded
exclusions already removed once there) that were closer than ``cutoff + skin``
when its list was last built. A graph's list is rebuilt only when one of its
beads has moved more than ``skin / 2`` since that build. Until then no pair can
have crossed into the cutoff from outside the list (two beads approach by at
most ``skin``), so filtering the list by the cutoff gives exactly the pairs a
per-step filter of all candidates gives.

The list is stored as a boolean mask over the candidates, and pairs are taken
from it in candidate order. :meth:`VerletList.within_cutoff` therefore returns
the same pairs *in the same order* as :func:`gnnmd.neighbors.within_cutoff` on
all candidates, and the model's energies and forces agree bit for bit.

Units: positions and lengths in nm.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from gnnmd.neighbors.dense import displacements, within_cutoff


class VerletList:
    """Per-graph Verlet lists over the candidate pairs of a batch.

    Args:
        candidates: (2, P) int64 candidate pairs i<j, never crossing graphs.
        graph_index: (N,) int64 graph of each bead.
        num_graphs: G.
        cutoff_nm: the interaction cutoff (nm).
        skin_nm: the skin (nm), > 0. A larger skin means rarer rebuilds and longer lists.
    """

    def __init__(
        self, candidates: Tensor, graph_index: Tensor, num_graphs: int, cutoff_nm: float, skin_nm: float
    ) -> None:
        if not cutoff_nm > 0:
            raise ValueError(f"cutoff_nm must be positive, got {cutoff_nm}")
        if not skin_nm > 0:
            raise ValueError(f"skin_nm must be positive (0 means no Verlet list), got {skin_nm}")
        self.candidates = candidates
        self.graph_index = graph_index
        self.num_graphs = int(num_graphs)
        self.cutoff_nm = float(cutoff_nm)
        self.skin_nm = float(skin_nm)
        self.candidate_graph = graph_index[candidates[0]]
        self.in_list = torch.zeros(candidates.shape[1], dtype=torch.bool, device=candidates.device)
        self.pairs = candidates[:, :0]
        self.reference_positions: Optional[Tensor] = None
        #: (G,) int64 number of builds of each graph's list (the first build counts).
        self.builds = torch.zeros(self.num_graphs, dtype=torch.int64, device=candidates.device)

    def stale_graphs(self, positions: Tensor) -> Tensor:
        """(G,) bool: graphs with a bead that moved more than skin/2 since their last build."""
        if self.reference_positions is None:
            return torch.ones(self.num_graphs, dtype=torch.bool, device=positions.device)
        moved = positions.detach() - self.reference_positions
        squared = (moved * moved).sum(dim=1)
        # A non-finite position gives NaN here; such a graph is rebuilt (and its pairs
        # dropped by the NaN comparison) so it cannot leave a stale list behind.
        squared = torch.where(torch.isfinite(squared), squared, torch.full_like(squared, float("inf")))
        worst = torch.zeros(self.num_graphs, dtype=squared.dtype, device=squared.device)
        worst = worst.scatter_reduce(0, self.graph_index, squared, reduce="amax", include_self=True)
        half_skin = 0.5 * self.skin_nm
        return worst > half_skin * half_skin

    def update(self, positions: Tensor, box: Optional[Tensor] = None) -> int:
        """Rebuild the lists of stale graphs at ``positions`` (N, 3) nm; returns how many were rebuilt."""
        stale = self.stale_graphs(positions)
        count = int(stale.sum())
        if count:
            self.rebuild(positions, stale, box)
        return count

    @torch.no_grad()
    def rebuild(self, positions: Tensor, graphs: Tensor, box: Optional[Tensor] = None) -> None:
        """Rebuild the lists of ``graphs`` ((G,) bool) at ``positions`` (N, 3) nm."""
        positions = positions.detach()
        chosen = torch.nonzero(graphs[self.candidate_graph]).flatten()
        vectors = displacements(positions, self.candidates.index_select(1, chosen), self.graph_index, box)
        reach = self.cutoff_nm + self.skin_nm
        self.in_list[chosen] = (vectors * vectors).sum(dim=1) < reach * reach
        self.pairs = self.candidates.index_select(1, torch.nonzero(self.in_list).flatten())
        bead_rebuilt = graphs[self.graph_index][:, None]
        if self.reference_positions is None:
            self.reference_positions = positions.clone()
        else:
            # In place: a captured CUDA graph holds this tensor's address.
            self.reference_positions.copy_(torch.where(bead_rebuilt, positions, self.reference_positions))
        self.builds += graphs.to(torch.int64)

    def within_cutoff(self, positions: Tensor, box: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Pairs inside the cutoff, as :func:`gnnmd.neighbors.within_cutoff` over all candidates.

        Call :meth:`update` at these positions first. Returns ``(pairs, vectors,
        distances)``: (2, E) int64, (E, 3) nm (from i to j) and (E,) nm,
        differentiable with respect to ``positions``.
        """
        return within_cutoff(positions, self.pairs, self.graph_index, self.cutoff_nm, box)

    def select_graphs(self, keep: Tensor, new_candidates: Tensor, new_graph_index: Tensor) -> VerletList:
        """The lists of the graphs ``keep`` ((G,) bool), renumbered for a batch without the others.

        ``new_candidates`` and ``new_graph_index`` are those of the smaller batch
        (packed from the kept graphs in order): the kept graphs' candidates keep
        their relative order, so their masks carry over unchanged.
        """
        kept_graphs = int(keep.sum())
        out = VerletList(new_candidates, new_graph_index, kept_graphs, self.cutoff_nm, self.skin_nm)
        if self.reference_positions is not None:
            out.in_list = self.in_list[keep[self.candidate_graph]].clone()
            out.pairs = new_candidates.index_select(1, torch.nonzero(out.in_list).flatten())
            out.reference_positions = self.reference_positions[keep[self.graph_index]].clone()
        out.builds = self.builds[keep].clone()
        return out
