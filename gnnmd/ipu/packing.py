"""Fixed-size packing: many graphs per pack, each pack the same shape, no per-graph padding.

Compilers that want static shapes (Graphcore's IPU, CUDA graphs, AOT export)
cannot take a batch whose node and edge counts change with its mix of
proteins. Padding every graph to the largest wastes most of the work; packing
several graphs into packs of fixed capacity wastes only each pack's tail
(Krell et al. 2021, "Efficient sequence packing without cross-contamination";
Graphcore's SchNet on QM9: about 98% of nodes used against about 62% with padding).

:func:`pack_graphs` is longest-pack-first histogram packing (LPFHP) under three
capacities at once (nodes, edges, graphs per pack): identical graphs (replicas)
are one histogram bin, bins are taken largest first, and each goes into the
open pack that it fits most tightly (best fit), as many copies at a time as fit.
:class:`PackLayout` turns a plan into the fixed-shape tensors a static model reads.

Units: none here (counts); positions handled by :class:`PackLayout` are nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.graph import GraphBatch

#: Extra padding nodes at the end of every pack. Padding bonds, angles and
#: dihedrals sit on them (at fixed, non-degenerate positions), so their energy
#: goes to the pack's dropped graph slot and their gradients stay finite.
SINK_NODES = 4


@dataclass(frozen=True)
class PackCapacity:
    """What one pack holds.

    Attributes:
        max_nodes: beads per pack.
        max_edges: neighbour pairs per pack (the static model's pair capacity).
        max_graphs: graphs per pack.
    """

    max_nodes: int
    max_edges: int
    max_graphs: int

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_edges", "max_graphs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class PackingPlan:
    """Which graph goes into which pack, in which slot, at which node offset.

    Attributes:
        capacity: the capacities every pack respects.
        nodes: (R,) node count of each graph.
        edges: (R,) edge demand of each graph.
        packs: per pack, its graph indices in slot order (slot k starts at the
            sum of the node counts of slots 0..k-1).
    """

    capacity: PackCapacity
    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    packs: tuple[tuple[int, ...], ...]
    _where: dict[int, tuple[int, int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = {}
        for pack, members in enumerate(self.packs):
            offset = 0
            for slot, graph in enumerate(members):
                where[graph] = (pack, slot, offset)
                offset += self.nodes[graph]
        object.__setattr__(self, "_where", where)

    @property
    def num_packs(self) -> int:
        return len(self.packs)

    def locate(self, graph: int) -> tuple[int, int, int]:
        """(pack, slot, node offset in the pack) of ``graph``."""
        return self._where[graph]

    def pack_nodes(self) -> list[int]:
        return [sum(self.nodes[g] for g in members) for members in self.packs]

    def pack_edges(self) -> list[int]:
        return [sum(self.edges[g] for g in members) for members in self.packs]

    @property
    def node_efficiency(self) -> float:
        """Real nodes over node capacity of all packs (1 = no padding)."""
        return sum(self.nodes) / (self.num_packs * self.capacity.max_nodes)

    @property
    def edge_efficiency(self) -> float:
        """Edge demand over edge capacity of all packs."""
        return sum(self.edges) / (self.num_packs * self.capacity.max_edges)

    def summary(self) -> dict:
        """Capacities, pack count and efficiencies, for logs and JSON."""
        return {
            "graphs": len(self.nodes),
            "packs": self.num_packs,
            "max_nodes": self.capacity.max_nodes,
            "max_edges": self.capacity.max_edges,
            "max_graphs": self.capacity.max_graphs,
            "node_efficiency": self.node_efficiency,
            "edge_efficiency": self.edge_efficiency,
        }

    def validate(self) -> None:
        """Raise ValueError unless every graph is placed exactly once and every pack fits."""
        placed = sorted(g for members in self.packs for g in members)
        if placed != list(range(len(self.nodes))):
            raise ValueError("the plan does not place every graph exactly once")
        cap = self.capacity
        for pack, members in enumerate(self.packs):
            nodes = sum(self.nodes[g] for g in members)
            edges = sum(self.edges[g] for g in members)
            if nodes > cap.max_nodes or edges > cap.max_edges or len(members) > cap.max_graphs:
                raise ValueError(
                    f"pack {pack} holds {nodes} nodes, {edges} edges, {len(members)} graphs; capacity is "
                    f"{cap.max_nodes}, {cap.max_edges}, {cap.max_graphs}"
                )


def pack_graphs(nodes: Sequence[int], edges: Sequence[int], capacity: PackCapacity) -> PackingPlan:
    """LPFHP under node, edge and graph capacities (see the module docstring).

    Args:
        nodes: node count of each graph (>= 1).
        edges: edge demand of each graph (>= 0), e.g. neighbour pairs with headroom.
        capacity: per-pack capacities.
    Returns:
        The plan; raises ValueError if a graph alone exceeds a capacity.
    """
    nodes = [int(n) for n in nodes]
    edges = [int(e) for e in edges]
    if len(nodes) != len(edges) or not nodes:
        raise ValueError(f"need one edge count per graph and at least one graph; got {len(nodes)} node "
                         f"counts and {len(edges)} edge counts")  # fmt: skip
    cap = capacity
    for graph, (n, e) in enumerate(zip(nodes, edges, strict=True)):
        if n < 1 or e < 0:
            raise ValueError(f"graph {graph} has {n} nodes and {e} edges; need >= 1 and >= 0")
        if n > cap.max_nodes or e > cap.max_edges:
            raise ValueError(f"graph {graph} ({n} nodes, {e} edges) does not fit in a pack of "
                             f"{cap.max_nodes} nodes and {cap.max_edges} edges")  # fmt: skip
    bins: dict[tuple[int, int], list[int]] = {}
    for graph, key in enumerate(zip(nodes, edges, strict=True)):
        bins.setdefault(key, []).append(graph)

    def size(key: tuple[int, int]) -> tuple[float, int, int]:
        return (max(key[0] / cap.max_nodes, key[1] / cap.max_edges), key[0], key[1])

    free_nodes: list[int] = []
    free_edges: list[int] = []
    members: list[list[int]] = []
    for key in sorted(bins, key=size, reverse=True):
        n, e = key
        queue = bins[key]
        while queue:
            pack = _best_fit(free_nodes, free_edges, members, n, e, cap)
            if pack is None:
                free_nodes.append(cap.max_nodes)
                free_edges.append(cap.max_edges)
                members.append([])
                pack = len(members) - 1
            fit_edges = free_edges[pack] // e if e else len(queue)
            count = min(len(queue), free_nodes[pack] // n, fit_edges, cap.max_graphs - len(members[pack]))
            members[pack].extend(queue[:count])
            del queue[:count]
            free_nodes[pack] -= count * n
            free_edges[pack] -= count * e
    plan = PackingPlan(cap, tuple(nodes), tuple(edges), tuple(tuple(m) for m in members))
    plan.validate()
    return plan


def _best_fit(
    free_nodes: list[int], free_edges: list[int], members: list[list[int]], n: int, e: int, cap: PackCapacity
) -> int | None:
    """The open pack with the least normalised slack left after taking one (n, e) graph, or None."""
    best, best_slack = None, math.inf
    for pack, (fn, fe) in enumerate(zip(free_nodes, free_edges, strict=True)):
        if fn >= n and fe >= e and len(members[pack]) < cap.max_graphs:
            slack = (fn - n) / cap.max_nodes + (fe - e) / cap.max_edges
            if slack < best_slack:
                best, best_slack = pack, slack
    return best


def choose_capacity(
    nodes: Sequence[int],
    edges: Sequence[int],
    target_nodes: int = 1024,
    granule: int = 8,
    max_graphs: int | None = None,
) -> PackingPlan:
    """The best-packed plan with about ``target_nodes`` nodes per pack.

    ``max_nodes``: every multiple of ``granule`` from 0.75 to 1.25
    ``target_nodes`` (at least the largest graph, at most all nodes) is tried, packing by nodes
    and graphs only; the highest node efficiency wins (ties: closest to the
    target). ``max_edges``: the smallest multiple of ``granule`` (binary search)
    that packs into no more packs than that. Packing takes milliseconds for
    thousands of graphs, so the search costs nothing next to a compile.

    Args:
        nodes: node count of each graph.
        edges: edge demand of each graph.
        target_nodes: preferred pack size (on an IPU: what one replica's memory holds).
        granule: capacities are multiples of this.
        max_graphs: graphs per pack (default: as many as fit).
    """
    if target_nodes < 1 or granule < 1:
        raise ValueError(f"target_nodes and granule must be >= 1, got {target_nodes} and {granule}")
    largest = max(int(n) for n in nodes)
    # Fewer nodes than one pack: one pack just big enough.
    high = min(max(largest, (5 * target_nodes) // 4), sum(int(n) for n in nodes))
    low = min(max(largest, (3 * target_nodes) // 4), high)
    unbounded = max(1, sum(int(e) for e in edges))
    best = None
    for max_nodes in range(_round_up(low, granule), _round_up(high, granule) + 1, granule):
        graphs = max_graphs if max_graphs is not None else max_nodes
        plan = pack_graphs(nodes, edges, PackCapacity(max_nodes, unbounded, graphs))
        score = (round(plan.node_efficiency, 12), -abs(max_nodes - target_nodes))
        if best is None or score > best[0]:
            best = (score, plan)
    plan = best[1]
    graphs = max_graphs if max_graphs is not None else plan.capacity.max_nodes
    edges_low = _round_up(max(1, max(int(e) for e in edges), -(-unbounded // plan.num_packs)), granule)
    edges_high = _round_up(max(1, max(plan.pack_edges())), granule)
    while edges_low < edges_high:  # the smallest edge capacity that costs no extra pack
        middle = _round_up((edges_low + edges_high) // 2, granule)
        if middle >= edges_high:
            break
        trial = pack_graphs(nodes, edges, PackCapacity(plan.capacity.max_nodes, middle, graphs))
        if trial.num_packs <= plan.num_packs:
            plan, edges_high = trial, middle
        else:
            edges_low = middle + granule
    used_graphs = max(len(m) for m in plan.packs) if max_graphs is None else max_graphs
    capacity = PackCapacity(plan.capacity.max_nodes, edges_high, used_graphs)
    return PackingPlan(capacity, plan.nodes, plan.edges, plan.packs)


def _round_up(value: int, granule: int) -> int:
    return -(-int(value) // granule) * granule


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
