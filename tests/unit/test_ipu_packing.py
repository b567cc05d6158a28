"""Fixed-size packing: every graph once, capacities kept, efficiency on the shipped systems, layout maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.graph import candidate_pairs, pack
from gnnmd.protein_mapping import protein_bead_vocabulary
from gnnmd.static.layout import build_layout
from gnnmd.static.packing import SINK_NODES, PackCapacity, choose_capacity, pack_graphs
from gnnmd.systems import list_systems, load_system


def neighbour_demand(system, cutoff_nm: float = 1.2, headroom: float = 1.25) -> int:
    """Candidate pairs inside the cutoff at the native structure, with headroom (as build_static plans)."""
    topology = system.topology
    i, j = candidate_pairs(topology.n_beads, topology.excluded_pairs(2))
    distances = np.linalg.norm(system.positions_nm[j] - system.positions_nm[i], axis=1)
    return int(np.ceil((distances < cutoff_nm).sum() * headroom))


@pytest.fixture(scope="module")
def mixed_set():
    """64 graphs cycling through every shipped system: (names, nodes, edges)."""
    systems = [load_system(name) for name in list_systems()]
    demand = {s.name: neighbour_demand(s) for s in systems}
    chosen = [systems[k % len(systems)] for k in range(64)]
    return [s.name for s in chosen], [s.topology.n_beads for s in chosen], [demand[s.name] for s in chosen]


@pytest.mark.parametrize("capacity", [PackCapacity(400, 10_000, 64), PackCapacity(600, 2_500, 64),
                                      PackCapacity(500, 10**6, 3)])  # fmt: skip
def test_every_graph_is_placed_once_and_every_pack_fits(capacity):
    rng = np.random.default_rng(0)
    nodes = rng.integers(20, 300, 200).tolist()
    edges = [int(n * rng.uniform(5, 8)) for n in nodes]
    plan = pack_graphs(nodes, edges, capacity)
    placed = sorted(g for members in plan.packs for g in members)
    assert placed == list(range(200))
    assert max(plan.pack_nodes()) <= capacity.max_nodes
    assert max(plan.pack_edges()) <= capacity.max_edges
    assert max(len(m) for m in plan.packs) <= capacity.max_graphs
    for graph in (0, 57, 199):  # offsets: back to back in slot order
        pack_id, slot, offset = plan.locate(graph)
        members = plan.packs[pack_id]
        assert members[slot] == graph and offset == sum(nodes[g] for g in members[:slot])


def test_each_capacity_binds(mixed_set):
    _, nodes, edges = mixed_set
    by_nodes = pack_graphs(nodes, edges, PackCapacity(1024, 10**9, 10**6))
    by_edges = pack_graphs(nodes, edges, PackCapacity(1024, max(edges) * 2, 10**6))
    by_graphs = pack_graphs(nodes, edges, PackCapacity(1024, 10**9, 2))
    assert by_edges.num_packs > by_nodes.num_packs and by_graphs.num_packs >= 32


def test_node_efficiency_on_mixed_shipped_systems(mixed_set):
    names, nodes, edges = mixed_set
    assert {"chignolin", "bba", "villin", "ntl9", "engrailed", "protein_g"} <= set(names)
    plan = choose_capacity(nodes, edges, target_nodes=1024)
    plan.validate()
    assert plan.node_efficiency >= 0.95
    assert plan.edge_efficiency >= 0.80
    padding = sum(nodes) / (len(nodes) * max(nodes))  # every graph padded to the largest, for scale
    assert padding < 0.6 < plan.node_efficiency
    assert 768 <= plan.capacity.max_nodes <= 1280 and plan.capacity.max_nodes % 8 == 0
    # The edge capacity was squeezed without costing a pack.
    loose = pack_graphs(nodes, edges, PackCapacity(plan.capacity.max_nodes, 10**9, 10**6))
    assert plan.num_packs <= loose.num_packs and plan.capacity.max_edges < max(loose.pack_edges()) + 8


def test_replicas_of_one_system_fill_packs_exactly():
    plan = choose_capacity([49] * 64, [1000] * 64, target_nodes=1024)
    assert plan.node_efficiency == 1.0


def test_refusals():
    with pytest.raises(ValueError, match="graph 1 .* does not fit"):
        pack_graphs([10, 600], [5, 5], PackCapacity(512, 100, 8))
    with pytest.raises(ValueError, match="max_edges must be at least 1"):
        PackCapacity(512, 0, 8)
    plan = pack_graphs([10, 20], [1, 1], PackCapacity(64, 8, 4))
    broken = type(plan)(plan.capacity, plan.nodes, plan.edges, ((0,), (0, 1)))
    with pytest.raises(ValueError, match="exactly once"):
        broken.validate()


def test_layout_maps_and_padding(chignolin, villin):
    topologies = [chignolin.topology, villin.topology, chignolin.topology]
    nodes = [t.n_beads for t in topologies]
    plan = pack_graphs(nodes, [1, 1, 1], PackCapacity(240, 8, 4))
    vocabulary = protein_bead_vocabulary()
    packs = [pack([topologies[g] for g in members], vocabulary, 2) for members in plan.packs]
    layout = build_layout(packs, plan)
    batch, length = layout.batch, layout.nodes_per_pack
    assert length == 240 + SINK_NODES and batch.node_mask.shape == (plan.num_packs, length)
    assert int(batch.node_mask.sum()) == sum(nodes)
    positions = torch.arange(sum(nodes) * 3, dtype=torch.float64).view(-1, 3) + 1.0
    packed = layout.scatter_positions(positions)
    assert torch.equal(layout.gather_nodes(packed), positions)
    assert bool((packed[~batch.node_mask] == 0).all())
    # Padding nodes and every padding term belong to each pack's dropped slot G.
    graphs, slots = batch.graphs, layout.graphs_per_pack + 1
    dropped = graphs.graph_index % slots == slots - 1
    assert torch.equal(dropped, ~batch.node_mask.reshape(-1))
    for terms in (graphs.bonds, graphs.angles, graphs.dihedrals):
        assert terms.shape[0] % plan.num_packs == 0
    slots = plan.num_packs * layout.graphs_per_pack
    energies = torch.arange(slots, dtype=torch.float64).view(plan.num_packs, -1)
    expected = [plan.locate(g)[0] * layout.graphs_per_pack + plan.locate(g)[1] for g in range(3)]
    assert layout.gather_graphs(energies).tolist() == expected
