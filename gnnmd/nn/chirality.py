"""Reflection-sensitive bead input: signed dihedral features of the bonded topology.

A network that sees only pair distances gives a structure and its mirror image the same
energy, so it cannot hold a free-energy difference between them (α_R and α_L helices,
L- and D-residues). The dihedral angle φ of a bonded path i-j-k-l changes sign under
reflection, so each bead gets, for each position p = 0..3 it can hold in a dihedral, the
sums over its dihedrals at that position of (sin φ, cos φ): 8 numbers, mapped linearly to the
width of the bead features and added to its type embedding. The pair filters stay functions
of distance, so every kernel backend computes the convolutions unchanged.

The map starts at zero: a freshly built chiral model computes what the achiral one does,
and training moves it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gnnmd.nn.priors.geometry import dihedral_angles

#: Per bead: (sin φ, cos φ) summed over its dihedrals, for each of the 4 positions in them.
NUM_CHIRAL_FEATURES = 8


def dihedral_features(
    positions: Tensor, dihedrals: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
) -> Tensor:
    """(N, 8): per bead and position p, Σ (sin φ, cos φ) over the dihedrals (D, 4) holding it at p."""
    angles = dihedral_angles(positions, dihedrals, graph_index, box)
    signed = torch.stack([torch.sin(angles), torch.cos(angles)], dim=1)  # (D, 2)
    slots = dihedrals * 4 + torch.arange(4, device=dihedrals.device)  # (D, 4): bead, position
    values = signed[:, None, :].expand(-1, 4, -1).reshape(-1, 2)
    features = positions.new_zeros(positions.shape[0] * 4, 2)
    features = features.index_add(0, slots.reshape(-1), values)
    return features.reshape(positions.shape[0], 8)  # NUM_CHIRAL_FEATURES (TorchScript reads no globals)


class ChiralInput(nn.Module):
    """(N, H) additions to the bead embeddings: a linear map (zero at start) of :func:`dihedral_features`."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.project = nn.Linear(NUM_CHIRAL_FEATURES, hidden_channels, bias=False)
        nn.init.zeros_(self.project.weight)

    def forward(
        self, positions: Tensor, dihedrals: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
    ) -> Tensor:
        return self.project(dihedral_features(positions, dihedrals, graph_index, box))
