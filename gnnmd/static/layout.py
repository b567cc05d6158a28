"""A packing plan made into fixed-shape tensors, and the maps between flat beads and packs.

:func:`build_layout` turns a :class:`~gnnmd.static.packing.PackingPlan` and the graphs of
each pack into a :class:`StaticBatch` (every tensor's shape fixed by the plan) and a
:class:`PackLayout` that scatters the caller's flat positions (N, 3) nm into packs and
gathers energies and forces back. Padding terms sit on each pack's sink nodes and belong to
its dropped graph slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.graph import GraphBatch
from gnnmd.static.packing import SINK_NODES, PackingPlan


class StaticBatch(NamedTuple):
    """The fixed-shape tensors of S packs of L = max_nodes + SINK_NODES nodes and G graph slots.

    Every index is global (pack s owns nodes s*L .. s*L+L-1 and graphs
    s*(G+1) .. s*(G+1)+G). Graph slot G of each pack is its dropped slot: it owns
    the pack's padding nodes and every padding term.

    Attributes:
        graphs: a genuine :class:`~gnnmd.graph.GraphBatch` of S*L nodes and S*(G+1)
            graphs, bonded term lists padded on the sink nodes; ``graphs.pairs``
            holds the flattened candidates (read ``candidate_mask`` with it).
        node_mask: (S, L) bool, True for real beads.
        candidates: (S, 2, P) int64 candidate pairs i<j of each pack (global indices),
            padded with a pair of sink nodes.
        candidate_mask: (S, P) bool, True for real candidates.
    """

    graphs: GraphBatch
    node_mask: Tensor
    candidates: Tensor
    candidate_mask: Tensor


@dataclass
class PackLayout:
    """A plan made into tensors, and the maps between the caller's flat beads and the packs.

    Attributes:
        plan: the packing plan.
        batch: the fixed-shape tensors.
        bead_index: (N,) int64, row of each bead (replicas back to back, in the
            caller's order) in the flattened (S*L, 3) pack positions.
        graph_slot: (R,) int64, index of each graph in the flattened (S*G) energies.
    """

    plan: PackingPlan
    batch: StaticBatch
    bead_index: Tensor
    graph_slot: Tensor

    @property
    def num_packs(self) -> int:
        return self.plan.num_packs

    @property
    def nodes_per_pack(self) -> int:
        """L: ``max_nodes`` plus the sink nodes."""
        return int(self.batch.node_mask.shape[1])

    @property
    def graphs_per_pack(self) -> int:
        """G: graph slots per pack, the dropped slot not counted."""
        return int(self.batch.graphs.ptr.shape[0] - 1) // self.num_packs - 1

    def scatter_positions(self, positions: Tensor) -> Tensor:
        """(N, 3) nm, replicas back to back -> (S, L, 3) nm, padding rows zero."""
        packed = positions.new_zeros(self.num_packs * self.nodes_per_pack, 3)
        packed[self.bead_index] = positions
        return packed.view(self.num_packs, self.nodes_per_pack, 3)

    def gather_nodes(self, values: Tensor) -> Tensor:
        """(S, L, k) per-node values (e.g. forces, kJ/mol/nm) -> (N, k) in the caller's order."""
        return values.reshape(-1, values.shape[-1])[self.bead_index]

    def gather_graphs(self, values: Tensor) -> Tensor:
        """(S, G) per-slot values (e.g. energies, kJ/mol) -> (R,) in the caller's order."""
        return values.reshape(-1)[self.graph_slot]


def build_layout(
    packs: Sequence[GraphBatch], plan: PackingPlan, device: torch.device | str | None = None
) -> PackLayout:
    """The tensors of ``plan`` from one packed :class:`GraphBatch` per pack.

    Args:
        packs: per pack, the GraphBatch of its graphs in slot order (as
            ``CGPotential.pack`` makes it); graphs are back to back from node 0.
        plan: the plan they follow.
        device: where the tensors live.
    """
    if len(packs) != plan.num_packs:
        raise ValueError(f"{len(packs)} GraphBatches for a plan of {plan.num_packs} packs")
    shape = _shape(packs, plan)
    length = shape["L"]
    names = ("types", "ptr", "bonds", "angles", "dihedrals", "pairs", "pair_mask", "node_mask", "residues")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for index, pack in enumerate(packs):
        local = _pack_arrays(pack, shape)
        node_base = index * length
        parts["types"].append(local["types"])
        parts["residues"].append(local["residues"] + node_base)
        parts["node_mask"].append(local["node_mask"])
        parts["ptr"].append(local["ptr"][:-1] + node_base)
        for name in ("bonds", "angles", "dihedrals", "pairs"):
            parts[name].append(local[name] + node_base)
        parts["pair_mask"].append(local["pair_mask"])
    total_nodes = plan.num_packs * length
    ptr = np.concatenate([*parts["ptr"], [total_nodes]])

    def tensor(array: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), device=device)

    counts = np.diff(ptr)
    graph_index = np.repeat(np.arange(len(counts)), counts)
    candidates = np.stack(parts["pairs"])  # (S, 2, P)
    graphs = GraphBatch(
        types=tensor(np.concatenate(parts["types"])),
        ptr=tensor(ptr),
        graph_index=tensor(graph_index),
        bonds=tensor(np.concatenate(parts["bonds"])),
        angles=tensor(np.concatenate(parts["angles"])),
        dihedrals=tensor(np.concatenate(parts["dihedrals"])),
        pairs=tensor(candidates.transpose(1, 0, 2).reshape(2, -1)),
        residues=tensor(np.concatenate(parts["residues"])),
    )
    batch = StaticBatch(graphs, tensor(np.stack(parts["node_mask"])), tensor(candidates),
                        tensor(np.stack(parts["pair_mask"])))  # fmt: skip
    return PackLayout(plan, batch, *(tensor(a) for a in _caller_maps(plan, length, shape["G"])))


def _shape(packs: Sequence[GraphBatch], plan: PackingPlan) -> dict[str, int]:
    """Every fixed size: L nodes, G slots, and the bonded and candidate counts of the fullest pack."""

    def most(name: str) -> int:
        return max(1, max(getattr(p, name).shape[-1 if name == "pairs" else 0] for p in packs))

    return {
        "L": plan.capacity.max_nodes + SINK_NODES,
        "G": max(len(m) for m in plan.packs),
        "bonds": most("bonds"),
        "angles": most("angles"),
        "dihedrals": most("dihedrals"),
        "pairs": most("pairs"),
    }


def _pad_rows(terms: np.ndarray, rows: int, filler: np.ndarray) -> np.ndarray:
    pad = np.broadcast_to(filler, (rows - terms.shape[0], filler.shape[0]))
    return np.concatenate([terms.reshape(-1, filler.shape[0]), pad]).astype(np.int64)


def _pack_arrays(pack: GraphBatch, shape: dict[str, int]) -> dict[str, np.ndarray]:
    """One pack's arrays with pack-local indices, padded to ``shape``."""
    length, slots = shape["L"], shape["G"] + 1
    sinks = np.arange(length - SINK_NODES, length, dtype=np.int64)
    sizes = np.diff(pack.ptr.cpu().numpy())
    real = int(sizes.sum())
    counts = np.zeros(slots, dtype=np.int64)
    counts[: len(sizes)] = sizes
    counts[-1] = length - real  # the dropped slot owns every padding node
    types = np.zeros(length, dtype=np.int64)
    types[:real] = pack.types.cpu().numpy()
    node_mask = np.zeros(length, dtype=bool)
    node_mask[:real] = True
    # Each padding node its own residue, above the pack's real ones (fewer than its real nodes).
    residues = np.arange(length, dtype=np.int64)
    residues[:real] = pack.residues.cpu().numpy()
    pairs = pack.pairs.cpu().numpy()
    padded_pairs = _pad_rows(pairs.T, shape["pairs"], sinks[:2]).T
    pair_mask = np.zeros(shape["pairs"], dtype=bool)
    pair_mask[: pairs.shape[1]] = True
    return {
        "types": types,
        "residues": residues,
        "node_mask": node_mask,
        "ptr": np.concatenate([[0], np.cumsum(counts)]),
        "bonds": _pad_rows(pack.bonds.cpu().numpy(), shape["bonds"], sinks[:2]),
        "angles": _pad_rows(pack.angles.cpu().numpy(), shape["angles"], sinks[:3]),
        "dihedrals": _pad_rows(pack.dihedrals.cpu().numpy(), shape["dihedrals"], sinks[:4]),
        "pairs": padded_pairs,
        "pair_mask": pair_mask,
    }


def _caller_maps(plan: PackingPlan, length: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) flat node row of each bead and (R,) flat energy slot of each graph, in graph order."""
    rows, graph_slot = [], []
    for graph, n in enumerate(plan.nodes):
        pack, slot, offset = plan.locate(graph)
        start = pack * length + offset
        rows.append(np.arange(start, start + n))
        graph_slot.append(pack * slots + slot)
    return np.concatenate(rows).astype(np.int64), np.array(graph_slot, dtype=np.int64)
