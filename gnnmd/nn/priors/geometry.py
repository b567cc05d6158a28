"""Internal coordinates of bonded terms (positions in nm, angles in rad).

Every bond vector goes through :func:`gnnmd.neighbors.displacements`, so bonded
terms see the same minimum image as the non-bonded pairs when a box is given.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from gnnmd.neighbors.dense import displacements


def _vectors(
    positions: Tensor, start: Tensor, end: Tensor, graph_index: Tensor, box: Optional[Tensor]
) -> Tensor:
    return displacements(positions, torch.stack([start, end]), graph_index, box)


def bond_lengths(
    positions: Tensor, bonds: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
) -> Tensor:
    """(B,) nm: |r_j - r_i| for bonds (B, 2); box optional (G, 3, 3) nm."""
    return torch.linalg.vector_norm(_vectors(positions, bonds[:, 0], bonds[:, 1], graph_index, box), dim=1)


def bond_angles(
    positions: Tensor, angles: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
) -> Tensor:
    """(A,) rad in [0, π]: angle i-j-k at j, via atan2 (smooth near 0 and π)."""
    a = _vectors(positions, angles[:, 1], angles[:, 0], graph_index, box)
    b = _vectors(positions, angles[:, 1], angles[:, 2], graph_index, box)
    return torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(a, b), dim=1), (a * b).sum(dim=1))


def bond_angle_cosines(
    positions: Tensor, angles: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
) -> Tensor:
    """(A,) cos θ of the angle i-j-k at j."""
    a = _vectors(positions, angles[:, 1], angles[:, 0], graph_index, box)
    b = _vectors(positions, angles[:, 1], angles[:, 2], graph_index, box)
    norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    return (a * b).sum(dim=1) / norms


def dihedral_angles(
    positions: Tensor, dihedrals: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
) -> Tensor:
    """(D,) rad in (-π, π]: IUPAC torsion i-j-k-l (trans = ±π)."""
    b1 = _vectors(positions, dihedrals[:, 0], dihedrals[:, 1], graph_index, box)
    b2 = _vectors(positions, dihedrals[:, 1], dihedrals[:, 2], graph_index, box)
    b3 = _vectors(positions, dihedrals[:, 2], dihedrals[:, 3], graph_index, box)
    n1 = torch.linalg.cross(b1, b2)
    n2 = torch.linalg.cross(b2, b3)
    y = (torch.linalg.cross(n1, n2) * b2).sum(dim=1) / torch.linalg.vector_norm(b2, dim=1)
    x = (n1 * n2).sum(dim=1)
    return torch.atan2(y, x)


#: Frames measured at once by :func:`frame_values`; bounds the flattened index tensors.
FRAME_CHUNK = 1024


Measure = Callable[[Tensor, Tensor, Tensor], Tensor]


def frame_values(frames: Tensor, terms: Tensor, function: Measure, chunk: int = FRAME_CHUNK) -> Tensor:
    """(F, T) values of ``function`` (one of the above) for terms (T, k) int64 in each of frames (F, n, 3) nm.

    Frames are flattened into one graph per chunk of ``chunk`` frames, so the
    index tensors stay bounded however many frames there are.
    """
    count, beads = frames.shape[0], frames.shape[1]
    pieces = []
    for start in range(0, count, chunk):
        block = frames[start : start + chunk]
        flat = block.reshape(-1, 3)
        offsets = beads * torch.arange(block.shape[0])[:, None, None]
        indices = (terms[None] + offsets).reshape(-1, terms.shape[1])
        graph_index = torch.zeros(flat.shape[0], dtype=torch.int64)  # unused without a box
        pieces.append(function(flat, indices, graph_index).reshape(block.shape[0], terms.shape[0]))
    return torch.cat(pieces) if pieces else frames.new_zeros((0, terms.shape[0]))
