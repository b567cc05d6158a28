"""Generalized forces along the torsions of the bonded graph: the training signal for free energies.

Rotating the beads on one side of a bond about the bond's axis changes the torsion around that
bond at unit rate and leaves every bond length, bond angle and other torsion of the molecule
as it is. The generalized force along that rotation, τ = Σ_a F_a · (u × (r_a − r_k)) over the
moving beads a (u the unit axis from the fixed end j to the moving end k), is the torque about
the axis, kJ/mol per rad: minus the derivative of the energy along the torsion. For a model,
matching τ to the data's mapped forces matches the torsional mean forces — the slopes of the
free energy along the torsions — without the errors of the stiff coordinates (bonds, angles):
their gradients are not orthogonal to a torsion's gradient, so a Cartesian force loss lets a
stiff prior's error, varying with the torsions, pull the torsional free energy off
(benchmarks/dihedral_map_fit.py measures it on alanine dipeptide).

A bond has a torsion when it is the central bond of a dihedral of the topology and a bridge
(no ring through it: in a ring no side can turn alone). Its moving side is the smaller one (the
torque of the other side is the same with the opposite sign when the forces have no net torque,
and the smaller side carries less noise). Side sums cost O(N): in a depth-first order of the
bonded graph, the far side of a bridge is one contiguous range of beads (a bridge is a tree edge
no back edge crosses), so every side sum is a difference of two prefix sums.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.nn.priors.geometry import dihedral_angles, frame_values
from gnnmd.topology import CGTopology


class MoleculeTorsions(NamedTuple):
    """One molecule's torsions. ``order`` (n,): the beads in depth-first order; per torsion (T,)
    int64, ranges in that order: the axis' ``fixed`` and ``moving`` ends (bead indices), the range
    ``start:end`` of the far side of the bond (from the search's root), the range
    ``outer_start:outer_end`` of the bond's connected component, and ``complement`` (bool: the
    moving side is the component less the far side)."""

    order: np.ndarray
    fixed: np.ndarray
    moving: np.ndarray
    start: np.ndarray
    end: np.ndarray
    outer_start: np.ndarray
    outer_end: np.ndarray
    complement: np.ndarray


class TorsionBatch(NamedTuple):
    """The torsions of a packed batch, laid out for :func:`torsional_forces`.

    Attributes:
        order: (N,) int64, the batch's beads graph by graph, each graph in its depth-first order;
            every other index below is a position in this order.
        anchor: (N,) int64, the first position of each position's connected component.
        fixed, moving: (T,) int64, the axis' ends.
        start, end: (T,) int64, the far side of the bond.
        outer_start, outer_end: (T,) int64, the bond's connected component.
        complement: (T,) bool, the moving side is the component less the far side.
    """

    order: Tensor
    anchor: Tensor
    fixed: Tensor
    moving: Tensor
    start: Tensor
    end: Tensor
    outer_start: Tensor
    outer_end: Tensor
    complement: Tensor


def depth_first(n_beads: int, bonds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Depth-first search over every component: (order (n,), position of each bead in it (n,),
    parent of each bead (-1 at a root) (n,), beads in each bead's subtree (n,)).

    Iterative; a bead's parent is the last bead to push it, which makes this the search a
    recursive one would do (each subtree a contiguous range of the order).
    """
    neighbours: list[list[int]] = [[] for _ in range(n_beads)]
    for i, j in bonds:
        neighbours[int(i)].append(int(j))
        neighbours[int(j)].append(int(i))
    parent = np.full(n_beads, -1, dtype=np.int64)
    position = np.full(n_beads, -1, dtype=np.int64)
    order: list[int] = []
    for root in range(n_beads):
        if position[root] >= 0:
            continue
        stack = [root]
        while stack:
            bead = stack.pop()
            if position[bead] >= 0:
                continue
            position[bead] = len(order)
            order.append(bead)
            for other in reversed(neighbours[bead]):
                if position[other] < 0:
                    parent[other] = bead
                    stack.append(other)
    size = np.ones(n_beads, dtype=np.int64)
    for bead in reversed(order):  # children come after their parent in pre-order
        if parent[bead] >= 0:
            size[parent[bead]] += size[bead]
    return np.array(order, dtype=np.int64), position, parent, size


def molecule_torsions(topology: CGTopology) -> MoleculeTorsions:
    """The torsions of ``topology``: the central bonds of its dihedrals that are bridges."""
    order, position, parent, size = depth_first(topology.n_beads, topology.bonds)
    root = order.copy()  # the root of each bead's component, filled in order
    for bead in order:
        root[bead] = bead if parent[bead] < 0 else root[parent[bead]]
    central = {tuple(sorted((int(j), int(k)))) for _, j, k, _ in topology.dihedrals}
    rows = []
    for a, b in sorted(central):
        child, other = (b, a) if parent[b] == a else (a, b)
        if parent[child] != other:
            continue  # not a tree edge of the search: the bond closes a ring
        first, last = int(position[child]), int(position[child] + size[child])
        if _bridged(topology.bonds, position, first, last):
            continue  # another bond also joins the far side to the rest: a ring
        outer = (int(position[root[child]]), int(position[root[child]] + size[root[child]]))
        moves_far_side = 2 * size[child] <= outer[1] - outer[0]
        ends = (other, child) if moves_far_side else (child, other)
        rows.append((*ends, first, last, *outer, not moves_far_side))
    columns = list(zip(*rows, strict=True)) if rows else [()] * 7
    return MoleculeTorsions(
        order, *(np.array(c, dtype=np.int64) for c in columns[:6]), np.array(columns[6], dtype=bool)
    )


def _bridged(bonds: np.ndarray, position: np.ndarray, first: int, last: int) -> bool:
    """Whether more than one bond joins the range [first, last) of the order to the rest."""
    inside = (position[bonds] >= first) & (position[bonds] < last)  # (B, 2)
    return int((inside[:, 0] != inside[:, 1]).sum()) > 1


def _in_order(own: MoleculeTorsions) -> dict[str, np.ndarray]:
    """The fields of :class:`TorsionBatch` for one molecule (positions in its depth-first order)."""
    position = np.empty_like(own.order)
    position[own.order] = np.arange(len(own.order))
    anchor = np.zeros_like(own.order)
    anchor[own.outer_start] = own.outer_start
    fields = {name: getattr(own, name) for name in TorsionBatch._fields if hasattr(own, name)}
    return {**fields, "anchor": np.maximum.accumulate(anchor), "fixed": position[own.fixed],
            "moving": position[own.moving]}  # fmt: skip


def pack_torsions(
    topologies: Sequence[CGTopology], device: torch.device | str | None = None, cache: dict | None = None
) -> TorsionBatch:
    """The torsions of ``topologies`` packed back to back (as :func:`gnnmd.graph.pack` packs beads).

    ``cache`` (optional) keeps each topology's torsions by ``id``, so that a batch of replicas of
    one molecule searches its graph once.
    """
    cache = {} if cache is None else cache
    parts: dict[str, list] = {name: [] for name in TorsionBatch._fields}
    offset = 0
    for topology in topologies:
        if id(topology) not in cache:  # the entry holds the topology, so that its id stays unique
            cache[id(topology)] = (topology, _in_order(molecule_torsions(topology)))
        own = cache[id(topology)][1]
        for name in TorsionBatch._fields:
            parts[name].append(own[name] if name == "complement" else own[name] + offset)
        offset += topology.n_beads
    return TorsionBatch(*(
        torch.as_tensor(
            np.concatenate(parts[name]) if parts[name] else np.zeros(0),
            dtype=torch.bool if name == "complement" else torch.int64, device=device,
        )
        for name in TorsionBatch._fields
    ))  # fmt: skip


def torsional_forces(positions: Tensor, forces: Tensor, torsions: TorsionBatch) -> Tensor:
    """(T,) kJ/mol/rad: the generalized force of ``forces`` (N, 3) kJ/mol/nm along each torsion's
    rotation, at ``positions`` (N, 3) nm; differentiable in both, computed in float64.

    τ = u · Σ_a (r_a − r_k) × F_a = u · (Σ_a r_a × F_a − r_k × Σ_a F_a), the sums over the moving
    side as prefix-sum differences; positions are taken relative to the batch's first bead of
    each torsion's component so that the two terms do not cancel large numbers.
    """
    if len(torsions.fixed) == 0:
        return forces.new_zeros(0)
    x = positions.double()[torsions.order]
    f = forces.double()[torsions.order]
    x = x - x[torsions.anchor]
    quantities = torch.cat([torch.cross(x, f, dim=-1), f], dim=1)  # (N, 6): r × F, F
    prefix = torch.cat([quantities.new_zeros(1, 6), torch.cumsum(quantities, dim=0)])
    far = prefix[torsions.end] - prefix[torsions.start]
    whole = prefix[torsions.outer_end] - prefix[torsions.outer_start]
    side = torch.where(torsions.complement[:, None], whole - far, far)
    fixed, moving = x[torsions.fixed], x[torsions.moving]
    axis = moving - fixed
    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    torque = side[:, :3] - torch.cross(moving, side[:, 3:], dim=-1)
    return (axis * torque).sum(-1)


def dihedral_forces(
    positions: Tensor, forces: Tensor, topology: CGTopology, dihedrals: Sequence[Sequence[int]]
) -> Tensor:
    """(F, D) kJ/mol/rad: the generalized force of ``forces`` along each dihedral angle i-j-k-l of
    ``dihedrals`` (IUPAC sign, as :func:`gnnmd.nn.priors.geometry.dihedral_angles`) in frames
    ``positions``, ``forces`` (F, n, 3) of ``topology``; float64.

    The torsion about the central bond j-k turns the dihedral at unit rate, with a sign fixed by which
    side moves: τ(F) / τ(∇θ), both linear in their force. Raises if a central bond has no torsion
    (not the central bond of one of the topology's dihedrals, or in a ring).
    """
    own = molecule_torsions(topology)
    axes = [tuple(sorted(pair)) for pair in zip(own.fixed.tolist(), own.moving.tolist(), strict=True)]
    columns = []
    for dihedral in dihedrals:
        axis = tuple(sorted((int(dihedral[1]), int(dihedral[2]))))
        if axis not in axes:
            raise ValueError(f"dihedral {tuple(dihedral)}: its central bond {axis} has no torsion "
                             "(no dihedral of the topology turns about it, or it is in a ring)")  # fmt: skip
        columns.append(axes.index(axis))
    x = positions.detach().double().requires_grad_(True)
    angles = frame_values(x, torch.as_tensor([list(d) for d in dihedrals]), dihedral_angles)
    slopes = [torch.autograd.grad(angles[:, d].sum(), x, retain_graph=True)[0] for d in range(len(columns))]
    batch = pack_torsions([topology] * len(x))
    frames, count = len(x), len(axes)

    def along(field: Tensor) -> Tensor:  # (F, n, 3) -> (F, T)
        return torsional_forces(x.detach().reshape(-1, 3), field.reshape(-1, 3), batch).reshape(frames, count)

    tau = along(forces.double())
    return torch.stack([tau[:, c] / along(s)[:, c] for c, s in zip(columns, slopes, strict=True)], dim=1)
