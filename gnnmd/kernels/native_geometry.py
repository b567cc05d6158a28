"""Pair distances and physical priors through the registered C++ ops (the tabulated backend on CPU).

``gnnmd::pair_distances``, ``gnnmd::bonded_priors`` and ``gnnmd::pair_repulsion``
(``csrc/``) replace some hundred small torch ops per step and their scatter-add
backward passes. Their pure-torch twins are :func:`gnnmd.neighbors.dense.displacements`
and the terms of :mod:`gnnmd.nn.priors`, which stay what training and the other
backends run (the ops give first derivatives only).

:func:`gnnmd.nn.backends.use_backend` puts these modules into a converted model
(``CGPotential.pair_distance_kernel``, ``PriorSet.kernel``); a model without them
never names the ops, so scripting it does not need the op library.
Units: nm, kJ/mol.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


class NativePairDistances(nn.Module):
    """(P,) |r_j - r_i| in nm for (2, P) pairs, minimum image in (G, 3, 3) boxes if given."""

    def forward(self, positions: Tensor, pairs: Tensor, graph_index: Tensor, box: Optional[Tensor]) -> Tensor:
        return torch.ops.gnnmd.pair_distances(positions, pairs, graph_index, box)


class NativePriorTerms(nn.Module):
    """(G,) bonded and repulsion prior energies, kJ/mol, from the prior set's tables (see the ops'
    sources for the arguments). Pairs at or beyond the cutoff contribute nothing."""

    def forward(
        self,
        positions: Tensor,
        graph_index: Tensor,
        box: Optional[Tensor],
        num_graphs: int,
        bead_prior_types: Tensor,
        num_prior_types: int,
        bonded: list[Tensor],
        cosine_angles: bool,
        pairs: Tensor,
        distances: Tensor,
        repulsion: list[Tensor],
        cutoff_nm: float,
        shift: bool,
        excluded: list[Tensor],
    ) -> Tensor:
        """``bonded``: bond terms, keys, k, r0; angle terms, keys, k, rest; dihedral terms, keys, cos
        and sin coefficients, constant. ``repulsion``: keys, sigma, epsilon (empty: no repulsion).
        ``excluded``: (2, M) bonded pairs that are in ``pairs`` but whose repulsion is left out."""
        energy = torch.ops.gnnmd.bonded_priors(
            positions, graph_index, box, num_graphs, bead_prior_types, num_prior_types,
            bonded[0], bonded[1], bonded[2], bonded[3], bonded[4], bonded[5], bonded[6], bonded[7],
            cosine_angles, bonded[8], bonded[9], bonded[10], bonded[11], bonded[12],
        )  # fmt: skip
        if len(repulsion) == 0:
            return energy
        energy = energy + torch.ops.gnnmd.pair_repulsion(
            distances, pairs, graph_index, num_graphs, bead_prior_types, num_prior_types,
            repulsion[0], repulsion[1], repulsion[2], cutoff_nm, shift,
        )  # fmt: skip
        for ends in excluded:
            lengths = torch.ops.gnnmd.pair_distances(positions, ends, graph_index, box)
            energy = energy - torch.ops.gnnmd.pair_repulsion(
                lengths, ends, graph_index, num_graphs, bead_prior_types, num_prior_types,
                repulsion[0], repulsion[1], repulsion[2], cutoff_nm, shift,
            )  # fmt: skip
        return energy
