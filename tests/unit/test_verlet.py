"""Verlet-skin and static-shape neighbour lists against the plain per-step filter.

Tolerances: the Verlet list must give the *same* pairs in the same order as
filtering every candidate, so distances, energies and forces are compared for
exact equality (tolerance 0), on one thread where CPU kernels are
deterministic. The static-shape (CUDA-graph) path sums extra exact zeros and
takes square roots differently: it is compared at 1e-12 relative in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.graph import candidate_pairs
from gnnmd.neighbors import within_cutoff
from gnnmd.neighbors.verlet import VerletList
from gnnmd.sim import LangevinSettings, ReplicaRunner
from gnnmd.static.pair_buffer import PairBuffer, masked_within_cutoff
from gnnmd.static.stepper import StaticStepper


def random_graphs(seed: int, sizes=(30, 45, 25)):
    """Random beads in boxes of 2.5 nm, several graphs packed back to back; all pairs are candidates."""
    rng = np.random.default_rng(seed)
    positions, pairs, graph, offset = [], [], [], 0
    for g, n in enumerate(sizes):
        positions.append(rng.uniform(0, 2.5, (n, 3)))
        pairs.append(candidate_pairs(n, np.zeros((0, 2), dtype=np.int64)) + offset)
        graph += [g] * n
        offset += n
    return (
        torch.tensor(np.concatenate(positions)),
        torch.tensor(np.concatenate(pairs, axis=1)),
        torch.tensor(graph),
        rng,
    )


@pytest.mark.parametrize("periodic", [False, True])
def test_verlet_pairs_equal_the_per_step_filter_along_a_random_walk(periodic):
    positions, pairs, graph, rng = random_graphs(0)
    cutoff, skin = 0.9, 0.3
    box = torch.tensor([[3.0, 0, 0], [0.4, 2.8, 0], [-0.3, 0.5, 2.9]], dtype=torch.float64)[None].expand(
        3, 3, 3
    )
    box = box if periodic else None
    verlet = VerletList(pairs, graph, 3, cutoff, skin)
    for _ in range(60):
        verlet.update(positions, box)
        expected = within_cutoff(positions, pairs, graph, cutoff, box)
        got = verlet.within_cutoff(positions, box)
        for e, g in zip(expected, got, strict=True):
            assert torch.equal(e, g)
        positions = positions + torch.tensor(rng.normal(0, 0.03, positions.shape))
    builds = verlet.builds.tolist()
    assert all(1 < b < 60 for b in builds), builds  # rebuilt, but not every step
    assert verlet.pairs.shape[1] < pairs.shape[1]  # the list is shorter than all candidates


def test_only_the_replica_that_moved_is_rebuilt():
    positions, pairs, graph, _ = random_graphs(1)
    verlet = VerletList(pairs, graph, 3, 0.9, 0.2)
    verlet.update(positions)
    moved = positions.clone()
    moved[40, 0] += 0.11  # bead 40 belongs to graph 1; half the skin is 0.1 nm
    moved[5, 1] += 0.09  # graph 0: still inside half the skin
    assert verlet.stale_graphs(moved).tolist() == [False, True, False]
    assert verlet.update(moved) == 1
    assert verlet.builds.tolist() == [1, 2, 1]


def test_verlet_runner_forces_equal_per_step_rebuild_forces(small_model, chignolin, villin, one_thread):
    """A mixed batch over a trajectory, float32 and float64: exactly the same forces and energies."""
    topologies = [chignolin.topology, villin.topology, chignolin.topology]
    positions = np.concatenate([chignolin.positions_nm, villin.positions_nm, chignolin.positions_nm])
    settings = LangevinSettings(timestep_fs=4.0, friction_per_ps=2.0)
    for dtype in (torch.float32, torch.float64):
        kwargs = dict(settings=settings, dtype=dtype, seed=4)
        plain = ReplicaRunner(small_model, topologies, positions, skin_nm=0.0, **kwargs)
        skinned = ReplicaRunner(small_model, topologies, positions, skin_nm=0.1, **kwargs)
        for _ in range(25):
            plain.step()
            skinned.step()
            assert torch.equal(plain.forces, skinned.forces)
            assert torch.equal(plain.energies, skinned.energies)
        assert 3 < skinned.neighbor_list_builds() < 3 * 26  # rebuilt some of the time


def test_padded_static_pairs_give_the_same_energy_and_forces(small_model, chignolin, villin, one_thread):
    model = small_model
    batch = model.pack([chignolin.topology, villin.topology])
    rng = np.random.default_rng(3)
    x = np.concatenate([chignolin.positions_nm, villin.positions_nm]) + rng.normal(0, 0.02, (222, 3))
    x = torch.tensor(x).requires_grad_(True)
    energy, forces = model.energy_and_forces(x, batch)
    verlet = VerletList(batch.pairs, batch.graph_index, 2, model.cutoff_nm, 0.3)
    verlet.update(x)
    buffer = PairBuffer(PairBuffer.capacity_for(verlet.pairs.shape[1], 1.5), "cpu")
    assert buffer.fill(verlet.pairs) and not bool(buffer.valid.all())  # padding present
    pairs, distances = masked_within_cutoff(x, buffer.pairs, buffer.valid, batch.graph_index, model.cutoff_nm)
    static_energy = model.energy_from_pairs(x, batch, pairs, distances)
    (gradient,) = torch.autograd.grad(static_energy.sum(), x)
    torch.testing.assert_close(static_energy, energy, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(-gradient, forces, rtol=1e-12, atol=1e-10)
    assert bool(torch.isfinite(gradient).all())
    assert not buffer.fill(batch.pairs)  # overflow is reported, not truncated


def test_static_stepper_follows_the_eager_trajectory(small_model, chignolin, one_thread):
    kwargs = dict(settings=LangevinSettings(timestep_fs=4.0), dtype=torch.float64, seed=2, skin_nm=0.05)
    eager = ReplicaRunner.replicas_of(small_model, chignolin, 3, **kwargs)
    static = ReplicaRunner.replicas_of(small_model, chignolin, 3, **kwargs)
    stepper = StaticStepper(static, capture=False)
    stepper.step(30)
    eager.step(30)
    assert static.steps_done == 30 and static.verlet.builds.sum() > 3  # lists were rebuilt on the way
    torch.testing.assert_close(static.positions, eager.positions, rtol=0, atol=1e-10)
    torch.testing.assert_close(static.velocities, eager.velocities, rtol=0, atol=1e-9)


def test_cuda_graph_refuses_on_cpu(small_model, chignolin):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ReplicaRunner.replicas_of(small_model, chignolin, 2, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_step_follows_the_eager_trajectory(small_model, chignolin):
    kwargs = dict(device="cuda", dtype=torch.float64, seed=2, skin_nm=0.05)
    eager = ReplicaRunner.replicas_of(small_model, chignolin, 4, **kwargs)
    graphed = ReplicaRunner.replicas_of(small_model, chignolin, 4, cuda_graph=True, **kwargs)
    eager.step(40)
    graphed.step(40)
    assert graphed._graphed.captures >= 1
    torch.testing.assert_close(graphed.positions, eager.positions, rtol=0, atol=1e-8)
