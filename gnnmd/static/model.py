"""The static-shape potential: a CGPotential's weights on fixed-size packs, masks instead of shapes.

:class:`StaticPotential` maps positions (S, L, 3) nm of S packs (see
:mod:`gnnmd.static.packing`) to energies (S, G) kJ/mol, forces (S, L, 3) kJ/mol/nm
and the neighbour-pair count of each pack. Every tensor inside has a shape fixed
by the layout, and nothing is read back to the host, so the step compiles once
(PopTorch/PopART, ONNX, CUDA graphs). Per call:

1. padding rows of the positions are replaced by fixed positions, so padding
   bonded terms (on the sink nodes) have finite geometry and zero gradient;
2. the distances of all candidate pairs of a pack select those inside the
   cutoff, and a prefix sum and a scatter compact them into a buffer of fixed
   capacity C (``max_edges``); the count is returned, never clipped silently:
   the host compares it with C (:func:`check_pair_counts`);
3. :func:`gnnmd.static.pair_buffer.masked_within_cutoff` sets unused slots to
   the cutoff distance (zero energy, zero force) and the model's own
   ``energy_from_pairs`` runs on the padded batch: padding nodes and terms
   belong to each pack's dropped graph slot, which is cut from the output;
4. forces are -∂E/∂x by autograd over the real slots only.

The weights are the model's own (a submodule, not a copy). Units: nm, kJ/mol.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gnnmd.errors import NeighborCapacityError
from gnnmd.graph import GraphBatch
from gnnmd.neighbors import within_cutoff
from gnnmd.nn.potential import CGPotential
from gnnmd.static.layout import PackLayout, StaticBatch, build_layout
from gnnmd.static.packing import SINK_NODES, PackingPlan, choose_capacity
from gnnmd.static.pair_buffer import masked_within_cutoff
from gnnmd.topology import CGTopology

#: Default factor on each graph's neighbour count at planning time: room for the pairs
#: that enter the cutoff as the protein moves before the capacity overflows.
DEFAULT_HEADROOM = 1.25


class StaticPotential(nn.Module):
    """Energies, forces and pair counts of S fixed-size packs (see the module docstring).

    Args:
        model: the dynamic potential whose weights are used (shared, not copied).
        batch: the layout's fixed-shape tensors (:attr:`PackLayout.batch`).
        max_edges: C, neighbour pairs per pack.
    """

    def __init__(self, model: CGPotential, batch: StaticBatch, max_edges: int) -> None:
        super().__init__()
        if max_edges < 1:
            raise ValueError(f"max_edges must be at least 1, got {max_edges}")
        self.model = model
        self.max_edges = int(max_edges)
        self.cutoff_nm = float(model.cutoff_nm)
        packs, length = batch.node_mask.shape
        self.num_packs, self.nodes_per_pack = int(packs), int(length)
        self.graphs_per_pack = int(batch.graphs.ptr.shape[0] - 1) // self.num_packs - 1
        for name in ("types", "ptr", "graph_index", "bonds", "angles", "dihedrals", "residues"):
            self.register_buffer(name, getattr(batch.graphs, name).clone())
        for name in ("node_mask", "candidates", "candidate_mask"):
            self.register_buffer(name, getattr(batch, name).clone())
        device = batch.node_mask.device
        sinks = torch.arange(packs, device=device)[:, None] * length + (length - SINK_NODES)
        self.register_buffer("sink_pairs", torch.cat([sinks, sinks + 1], dim=1))  # (S, 2)
        dtype = next(model.parameters()).dtype
        self.register_buffer("padding_positions", padding_positions(length, dtype).to(device))

    def load(self, batch: StaticBatch) -> None:
        """Copy another layout of the same shapes in place (no recompile, CUDA graphs stay valid)."""
        new = {**batch.graphs._asdict(), **batch._asdict()}
        for name in ("types", "ptr", "graph_index", "bonds", "angles", "dihedrals", "residues", "node_mask",
                     "candidates", "candidate_mask"):  # fmt: skip
            buffer = getattr(self, name)
            if tuple(new[name].shape) != tuple(buffer.shape):
                raise ValueError(f"layout field {name!r} has shape {tuple(new[name].shape)}, this static "
                                 f"model was built for {tuple(buffer.shape)}")  # fmt: skip
            buffer.copy_(new[name])

    def compact_pairs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Candidate pairs inside the cutoff, per pack, into C slots.

        Args:
            x: (S*L, 3) nm.
        Returns:
            ``(pairs, valid, counts)``: (2, S*C) int64 global pairs (unused slots
            on sink nodes), (S*C,) bool, and (S,) int64 pairs inside the cutoff
            per pack (may exceed C: then the pack overflowed).
        """
        packs, count = self.candidate_mask.shape
        capacity = self.max_edges
        positions = x.detach()  # selection only: the gradient flows through masked_within_cutoff
        vectors = positions[self.candidates[:, 1]] - positions[self.candidates[:, 0]]
        inside = self.candidate_mask & ((vectors * vectors).sum(dim=-1) < self.cutoff_nm * self.cutoff_nm)
        counts = inside.to(torch.int64).sum(dim=1)
        rank = torch.cumsum(inside.to(torch.int64), dim=1) - 1
        order = torch.arange(count, device=x.device).expand(packs, count)
        # Every target index is distinct (kept pairs to 0..C-1, the rest past C), so the scatter is exact.
        target = torch.where(inside & (rank < capacity), rank, order + capacity)
        slots = torch.zeros(packs, capacity + count, dtype=torch.int64, device=x.device)
        chosen = slots.scatter(1, target, order)[:, :capacity]
        valid = torch.arange(capacity, device=x.device)[None, :] < counts[:, None]
        pairs = torch.gather(self.candidates, 2, chosen[:, None, :].expand(packs, 2, capacity))
        pairs = torch.where(valid[:, None, :], pairs, self.sink_pairs[:, :, None])
        return pairs.permute(1, 0, 2).reshape(2, packs * capacity), valid.reshape(-1), counts

    def energies(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Energies (S, G) kJ/mol and pair counts (S,) at ``positions`` (S, L, 3) nm (no forces)."""
        packs, length = self.num_packs, self.nodes_per_pack
        mask = self.node_mask[:, :, None]
        padding = self.padding_positions.to(positions.dtype)
        x = torch.where(mask, positions, padding).reshape(packs * length, 3)
        pairs, valid, counts = self.compact_pairs(x)
        batch = GraphBatch(self.types, self.ptr, self.graph_index, self.bonds, self.angles, self.dihedrals,
                          pairs, self.residues)  # fmt: skip
        pairs, distances = masked_within_cutoff(x, pairs, valid, self.graph_index, self.cutoff_nm)
        # Slot G of each pack takes the padding nodes' bead energies and the padding terms: dropped here.
        energy = self.model.energy_from_pairs(x, batch, pairs, distances)
        return energy.view(packs, self.graphs_per_pack + 1)[:, :-1], counts

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Energies (S, G) kJ/mol, forces (S, L, 3) kJ/mol/nm, pair counts (S,) at (S, L, 3) nm.

        Forces on padding rows are zero; empty graph slots have zero energy.
        """
        with torch.enable_grad():
            x = positions.detach().requires_grad_(True)
            energy, counts = self.energies(x)
            (gradient,) = torch.autograd.grad([energy.sum()], [x])
        return energy.detach(), -gradient, counts


def padding_positions(length: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(L, 3) nm: a helix (radius 0.3 nm, rise 0.15 nm, 1 rad per node), so any 4 rows are non-degenerate."""
    k = torch.arange(length, dtype=torch.float64)
    helix = torch.stack([0.3 * torch.cos(k), 0.3 * torch.sin(k), 0.15 * k], dim=1)
    return helix.to(dtype)


def check_pair_counts(counts: Tensor, capacity: int, cutoff_nm: float) -> None:
    """Raise NeighborCapacityError if any pack's ``counts`` (S,) exceeds ``capacity`` (reads to host)."""
    values = counts.detach().cpu()
    worst = int(values.argmax())
    if int(values[worst]) > capacity:
        over = int((values > capacity).sum())
        raise NeighborCapacityError(
            f"neighbour capacity overflow: pack {worst} has {int(values[worst])} pairs inside the "
            f"{cutoff_nm:g} nm cutoff but room for {capacity} ({over} of {values.numel()} packs over); the "
            "step's energies and forces are incomplete. Plan again with more headroom (headroom=...) "
            "or a larger max_edges"
        )


def neighbor_demand(
    model: CGPotential, topologies: Sequence[CGTopology], positions_nm: np.ndarray | Tensor, headroom: float
) -> tuple[list[int], list[int]]:
    """Node counts and neighbour-pair demand of each graph at ``positions_nm`` (N, 3) nm.

    The demand is the pairs inside the model's cutoff times ``headroom``, at
    most the graph's candidate pairs (then it can never overflow).
    """
    if not headroom >= 1.0:
        raise ValueError(f"headroom must be >= 1, got {headroom}")
    batch = model.pack(topologies)
    x = torch.as_tensor(positions_nm, dtype=torch.float64)
    pairs, _, _ = within_cutoff(x, batch.pairs, batch.graph_index, model.cutoff_nm)
    graphs = len(topologies)
    inside = torch.bincount(batch.graph_index[pairs[0]], minlength=graphs).tolist()
    candidates = torch.bincount(batch.graph_index[batch.pairs[0]], minlength=graphs).tolist()
    demand = [min(c, math.ceil(n * headroom)) for n, c in zip(inside, candidates, strict=True)]
    return [t.n_beads for t in topologies], demand


def build_static(
    model: CGPotential,
    topologies: Sequence[CGTopology],
    positions_nm: np.ndarray | Tensor,
    *,
    target_nodes: int = 1024,
    headroom: float = DEFAULT_HEADROOM,
    plan: PackingPlan | None = None,
    device: torch.device | str | None = None,
) -> tuple[StaticPotential, PackLayout]:
    """A static model and its layout for ``topologies`` (one graph each, replicas repeated).

    Args:
        model: the potential (its weights are shared with the static model).
        topologies: the graphs, in the caller's order.
        positions_nm: (N, 3) nm, graphs back to back: sets each graph's pair demand.
        target_nodes: preferred nodes per pack (see :func:`gnnmd.static.packing.choose_capacity`).
        headroom: factor on the pair counts at ``positions_nm``.
        plan: use this plan instead of choosing one.
        device: where the buffers live.
    """
    if plan is None:
        nodes, edges = neighbor_demand(model, topologies, positions_nm, headroom)
        plan = choose_capacity(nodes, edges, target_nodes=target_nodes)
    cache: dict[tuple[int, ...], GraphBatch] = {}
    packs = []
    for members in plan.packs:
        key = tuple(id(topologies[g]) for g in members)  # replicas: identical packs are packed once
        if key not in cache:
            cache[key] = model.pack([topologies[g] for g in members])
        packs.append(cache[key])
    layout = build_layout(packs, plan, device)
    return StaticPotential(model, layout.batch, plan.capacity.max_edges), layout


class StaticEvaluator:
    """Host side of a static model: flat positions in, flat energies and forces out, overflow checked.

    Args:
        layout: the packing layout.
        module: the static model, or anything called like it (a PopTorch executor).
        capacity: the module's pair capacity per pack.
        cutoff_nm: for the overflow message.
    """

    def __init__(
        self, layout: PackLayout, module: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]],
        capacity: int, cutoff_nm: float,
    ) -> None:  # fmt: skip
        self.layout = layout
        self.module = module
        self.capacity = int(capacity)
        self.cutoff_nm = float(cutoff_nm)

    def __call__(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Energies (R,) kJ/mol and forces (N, 3) kJ/mol/nm at ``positions`` (N, 3) nm.

        Raises NeighborCapacityError (before returning anything) if a pack overflowed.
        """
        energies, forces, counts = self.module(self.layout.scatter_positions(positions.detach()))
        check_pair_counts(counts, self.capacity, self.cutoff_nm)
        device, dtype = positions.device, positions.dtype
        energies = energies.to(device=device, dtype=dtype)
        forces = forces.to(device=device, dtype=dtype)
        return self.layout.gather_graphs(energies), self.layout.gather_nodes(forces)
