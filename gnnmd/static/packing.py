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
:mod:`gnnmd.static.layout` turns a plan into the fixed-shape tensors a static model reads.

Units: none here (counts); positions handled by :class:`PackLayout` are nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

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
