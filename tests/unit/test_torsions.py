"""Generalized forces along torsions (gnnmd.torsions): sides, rings, values, derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gnnmd.nn.priors.geometry import dihedral_angles, frame_values
from gnnmd.topology import custom_topology
from gnnmd.torsions import dihedral_forces, molecule_torsions, pack_torsions, torsional_forces
from tests.conftest import perturbed


def sides(topology) -> dict[tuple[int, int], tuple[set, set]]:
    """Per central bond of a dihedral that no ring contains: the beads on each side (brute force)."""
    n = topology.n_beads
    result = {}
    for j, k in {tuple(sorted((int(j), int(k)))) for _, j, k, _ in topology.dihedrals}:
        kept = [b for b in topology.bonds if set(map(int, b)) != {j, k}]
        rows, cols = (np.array([b[0] for b in kept]), np.array([b[1] for b in kept]))
        graph = coo_matrix((np.ones(len(kept)), (rows, cols)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        if labels[j] != labels[k]:
            result[(j, k)] = ({b for b in range(n) if labels[b] == labels[j]},
                              {b for b in range(n) if labels[b] == labels[k]})  # fmt: skip
    return result


def brute_force(x: torch.Tensor, f: torch.Tensor, fixed: int, moving: int, side: set) -> float:
    axis = (x[moving] - x[fixed]) / torch.linalg.vector_norm(x[moving] - x[fixed])
    return float(sum(torch.dot(f[a], torch.cross(axis, x[a] - x[moving], dim=0)) for a in side))


def ring_topology():
    """Two chains joined by a five-membered ring (0-1-2-[3-4-5-6-7]-3 ... 8-9), plus a lone chain."""
    bonds = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 3), (5, 8), (8, 9), (9, 10),
             (11, 12), (12, 13), (13, 14)]  # fmt: skip
    return custom_topology("ring", ["C"] * 15, [12.0] * 15, bonds)


@pytest.mark.parametrize("which", ["chignolin", "ring"])
def test_torsions_are_the_ring_free_central_bonds_and_move_the_smaller_side(which, chignolin):
    topology = chignolin.topology if which == "chignolin" else ring_topology()
    expected = sides(topology)
    own = molecule_torsions(topology)
    assert len(own.fixed) == len(expected) > 0
    order = own.order
    for t in range(len(own.fixed)):
        fixed, moving = int(own.fixed[t]), int(own.moving[t])
        near, far = expected[tuple(sorted((fixed, moving)))]
        moved = near if moving in near else far
        assert len(moved) <= len(near | far) - len(moved)  # the smaller side (or half)
        inside = set(order[own.start[t] : own.end[t]].tolist())
        component = set(order[own.outer_start[t] : own.outer_end[t]].tolist())
        assert component == near | far
        assert (component - inside if own.complement[t] else inside) == moved
    if which == "ring":  # bonds 3-4 ... in the ring have dihedrals about them but are no torsions
        ring = {(3, 4), (4, 5), (5, 6), (6, 7), (3, 7)}
        axes = {tuple(sorted((int(a), int(b)))) for a, b in zip(own.fixed, own.moving, strict=True)}
        assert axes and not ring & axes


def test_packed_torsional_forces_equal_the_sum_over_the_moving_side(chignolin):
    topologies = [chignolin.topology, ring_topology(), chignolin.topology]
    n = sum(t.n_beads for t in topologies)
    generator = torch.Generator().manual_seed(0)
    x = 5.0 + torch.randn(n, 3, generator=generator, dtype=torch.float64)  # far from the origin
    f = 300.0 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    batch = pack_torsions(topologies)
    got = torsional_forces(x, f, batch)
    expected, offset = [], 0
    for topology in topologies:
        own = molecule_torsions(topology)
        for t in range(len(own.fixed)):
            index = np.arange(own.start[t], own.end[t])
            if own.complement[t]:
                index = np.setdiff1d(np.arange(own.outer_start[t], own.outer_end[t]), index)
            side = {int(own.order[i]) + offset for i in index}
            expected.append(brute_force(x, f, int(own.fixed[t]) + offset, int(own.moving[t]) + offset, side))
        offset += topology.n_beads
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-9)


def rotated(x: torch.Tensor, fixed: int, moving: int, side: list[int], angle: float) -> torch.Tensor:
    """``x`` with ``side`` turned by ``angle`` rad about the axis fixed → moving (Rodrigues)."""
    axis = (x[moving] - x[fixed]) / torch.linalg.vector_norm(x[moving] - x[fixed])
    lever = x[side] - x[moving]
    turned = (lever * np.cos(angle) + torch.cross(axis.expand_as(lever), lever, dim=-1) * np.sin(angle)
              + axis * (lever @ axis)[:, None] * (1 - np.cos(angle)))  # fmt: skip
    out = x.clone()
    out[side] = x[moving] + turned
    return out


def test_torsional_force_is_minus_the_energy_slope_along_the_rotation(small_model, chignolin):
    """For a model's own forces, τ = -dU/dθ, by central differences of the energy under the rotation."""
    topology = chignolin.topology
    x = perturbed(chignolin.positions_nm, 0.01, seed=2)
    batch = small_model.pack([topology])
    _, forces = small_model.energy_and_forces(x, batch)
    torsions = pack_torsions([topology])
    tau = torsional_forces(x, forces, torsions)
    own, step = molecule_torsions(topology), 1e-5
    for t in range(0, len(own.fixed), 3):
        index = np.arange(own.start[t], own.end[t])
        if own.complement[t]:
            index = np.setdiff1d(np.arange(own.outer_start[t], own.outer_end[t]), index)
        side = own.order[index].tolist()
        ends = int(own.fixed[t]), int(own.moving[t])
        with torch.no_grad():
            energies = [float(small_model(rotated(x, *ends, side, s * step), batch)) for s in (1, -1)]
        assert float(tau[t]) == pytest.approx(-(energies[0] - energies[1]) / (2 * step), rel=1e-6, abs=1e-6)


def test_dihedral_forces_are_minus_the_energy_slope_along_each_dihedral(small_model, chignolin):
    """Along a dihedral angle θ (not the rotation): -dU/dθ by central differences, whichever side the
    torsion moves and whichever way its axis points; two frames at once; a ring bond is refused."""
    topology = chignolin.topology
    frames = [perturbed(chignolin.positions_nm, 0.01, seed=s) for s in (3, 4)]
    forces = torch.stack([small_model.energy_and_forces(x, small_model.pack([topology]))[1] for x in frames])
    chosen = topology.dihedrals[[0, 7, len(topology.dihedrals) - 1]].tolist()
    got = dihedral_forces(torch.stack(frames), forces, topology, chosen)
    assert got.shape == (2, 3) and got.dtype == torch.float64
    own, step = molecule_torsions(topology), 1e-5
    axes = [tuple(sorted(p)) for p in zip(own.fixed.tolist(), own.moving.tolist(), strict=True)]
    batch = small_model.pack([topology])
    for f, x in enumerate(frames):
        for d, dihedral in enumerate(chosen):
            t = axes.index(tuple(sorted(dihedral[1:3])))
            index = np.arange(own.start[t], own.end[t])
            if own.complement[t]:
                index = np.setdiff1d(np.arange(own.outer_start[t], own.outer_end[t]), index)
            ends, side = (int(own.fixed[t]), int(own.moving[t])), own.order[index].tolist()
            moved = [rotated(x, *ends, side, s * step) for s in (1, -1)]
            with torch.no_grad():
                energy = [float(small_model(y, batch)) for y in moved]
            angle = [float(frame_values(y[None], torch.tensor([dihedral]), dihedral_angles)) for y in moved]
            slope = (energy[0] - energy[1]) / (angle[0] - angle[1])
            assert float(got[f, d]) == pytest.approx(-slope, rel=1e-5, abs=1e-5)
    ring = ring_topology()
    in_ring = next(d for d in ring.dihedrals.tolist() if sorted(d[1:3]) == [3, 4])
    with pytest.raises(ValueError, match=r"central bond \(3, 4\) has no torsion"):
        dihedral_forces(torch.zeros(1, 15, 3), torch.zeros(1, 15, 3), ring, [in_ring])


def test_no_torsions_and_gradients(chignolin):
    empty = custom_topology("pair", ["C", "C"], [12.0, 12.0], [(0, 1)])
    x = torch.zeros(2, 3, dtype=torch.float64)
    assert torsional_forces(x, x, pack_torsions([empty])).shape == (0,)
    topology = chignolin.topology
    x = torch.tensor(chignolin.positions_nm, dtype=torch.float64)
    f = torch.randn(topology.n_beads, 3, dtype=torch.float64, requires_grad=True)
    torsions = pack_torsions([topology])
    assert torch.autograd.gradcheck(lambda forces: torsional_forces(x, forces, torsions), (f,))
