"""Neighbour lists against brute force, with and without periodic boxes."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from gnnmd.graph import candidate_pairs, pack
from gnnmd.neighbors import within_cutoff


def brute_force(positions, pairs, cutoff, box=None):
    found = {}
    for i, j in pairs.T:
        d = positions[j] - positions[i]
        if box is None:
            distance = np.linalg.norm(d)
        else:
            shifts = itertools.product((-1, 0, 1), repeat=3)
            distance = min(np.linalg.norm(d + np.array(s) @ box) for s in shifts)
        if distance < cutoff:
            found[(int(i), int(j))] = distance
    return found


def as_dict(pairs, distances):
    return {
        (int(i), int(j)): float(d) for (i, j), d in zip(pairs.T.tolist(), distances.tolist(), strict=True)
    }


def test_within_cutoff_matches_brute_force():
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 2.0, (40, 3))
    pairs = candidate_pairs(40, np.zeros((0, 2), dtype=np.int64))
    got_pairs, vectors, distances = within_cutoff(
        torch.tensor(positions), torch.tensor(pairs), torch.zeros(40, dtype=torch.int64), 0.8
    )
    expected = brute_force(positions, pairs, 0.8)
    got = as_dict(got_pairs, distances)
    assert got.keys() == expected.keys() and len(got) > 20
    for key, distance in expected.items():
        assert abs(got[key] - distance) < 1e-12
    torch.testing.assert_close(
        vectors, torch.tensor(positions)[got_pairs[1]] - torch.tensor(positions)[got_pairs[0]]
    )


def test_minimum_image_in_triclinic_box():
    rng = np.random.default_rng(1)
    box = np.array([[3.0, 0.0, 0.0], [0.8, 2.9, 0.0], [-0.6, 0.7, 3.1]])  # OpenMM reduced form
    positions = rng.uniform(0, 1, (30, 3)) @ box
    pairs = candidate_pairs(30, np.zeros((0, 2), dtype=np.int64))
    got_pairs, _, distances = within_cutoff(
        torch.tensor(positions), torch.tensor(pairs), torch.zeros(30, dtype=torch.int64), 1.2,
        torch.tensor(box)[None],
    )  # fmt: skip
    expected = brute_force(positions, pairs, 1.2, box)
    got = as_dict(got_pairs, distances)
    assert got.keys() == expected.keys()
    for key, distance in expected.items():
        assert abs(got[key] - distance) < 1e-12


def test_candidate_pairs_exclude_bonded_neighbours(chignolin):
    topology = chignolin.topology
    pairs = candidate_pairs(topology.n_beads, topology.excluded_pairs(2))
    present = set(map(tuple, pairs.T.tolist()))
    excluded = set(map(tuple, topology.excluded_pairs(2).tolist()))
    assert not present & excluded
    assert len(present) + len(excluded) == topology.n_beads * (topology.n_beads - 1) // 2


def test_pack_offsets_and_pointers(chignolin, villin):
    from gnnmd.protein_mapping import protein_bead_vocabulary

    batch = pack([chignolin.topology, villin.topology, chignolin.topology], protein_bead_vocabulary(), 2)
    n_c, n_v = chignolin.topology.n_beads, villin.topology.n_beads
    assert batch.ptr.tolist() == [0, n_c, n_c + n_v, 2 * n_c + n_v]
    assert batch.graph_index.tolist() == [0] * n_c + [1] * n_v + [2] * n_c
    # No pair or bonded term crosses a graph boundary.
    for terms in (batch.bonds, batch.angles, batch.dihedrals, batch.pairs.t()):
        graphs = batch.graph_index[terms]
        assert (graphs == graphs[:, :1]).all()
    assert torch.equal(
        batch.bonds[-len(chignolin.topology.bonds) :] - (n_c + n_v), torch.tensor(chignolin.topology.bonds)
    )


def test_residues_are_numbered_across_the_batch(chignolin, villin):
    """Each bead's residue, numbered on from one graph to the next, so no two graphs share one."""
    from gnnmd.graph import pack, residue_numbers

    chig = residue_numbers(chignolin.topology)
    assert chig[:5].tolist() == [0, 0, 0, 0, 0] and int(chig[-1]) == 9  # 5 beads of TYR 1, ten residues
    vocabulary = sorted(set(chignolin.topology.bead_types) | set(villin.topology.bead_types))
    batch = pack([chignolin.topology, villin.topology, chignolin.topology], vocabulary, 2)
    residues = batch.residues.numpy()
    sizes = np.diff(batch.ptr.numpy())
    parts = np.split(residues, np.cumsum(sizes)[:-1])
    assert parts[0].tolist() == chig.tolist()
    assert parts[1][0] == 10 and parts[2][0] == parts[1][-1] + 1
    assert np.all(np.diff(residues) >= 0)
