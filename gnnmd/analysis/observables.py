"""Observables of CG trajectories (frames (F, n, 3) in nm): internal coordinates per term type.

Each observable is a named set of samples with a value range, compared between
a model's simulation and the reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gnnmd.nn.priors.geometry import bond_angles, bond_lengths, dihedral_angles
from gnnmd.topology import CGTopology


@dataclass(frozen=True)
class Observable:
    """Samples (S, D) of a D-dimensional observable (D = 1 or 2).

    ``periodic`` observables (dihedrals) are binned on (-π, π]; the others on the
    range spanned by the samples being compared.
    """

    name: str
    samples: np.ndarray
    periodic: bool
    unit: str


def _measure(frames: np.ndarray, terms: np.ndarray, function) -> np.ndarray:
    """(F, T) values of ``function`` for T terms in each of F frames."""
    count, beads = frames.shape[0], frames.shape[1]
    flat = torch.as_tensor(frames, dtype=torch.float64).reshape(-1, 3)
    offsets = beads * torch.arange(count)[:, None, None]
    indices = (torch.tensor(np.asarray(terms))[None] + offsets).reshape(-1, terms.shape[1])
    return function(flat, indices, torch.zeros(flat.shape[0], dtype=torch.int64)).reshape(count, -1).numpy()


def _label(topology: CGTopology, term: np.ndarray) -> str:
    return "-".join(topology.bead_types[i] for i in term)


def term_observables(topology: CGTopology, frames: np.ndarray) -> list[Observable]:
    """Bond-length, angle and dihedral distributions, pooled by bead-type tuple.

    For a molecule with exactly two dihedrals (alanine dipeptide's φ and ψ) the
    joint (φ, ψ) distribution is added as ``"phi_psi"``.
    """
    frames = np.asarray(frames, dtype=np.float64).reshape(-1, topology.n_beads, 3)
    observables = []
    kinds = (
        ("bond", topology.bonds, bond_lengths, False, "nm"),
        ("angle", topology.angles, bond_angles, False, "rad"),
        ("dihedral", topology.dihedrals, dihedral_angles, True, "rad"),
    )
    for kind, terms, function, periodic, unit in kinds:
        if len(terms) == 0:
            continue
        values = _measure(frames, terms, function)
        labels = [_label(topology, t) for t in terms]
        for label in sorted(set(labels)):
            columns = [i for i, other in enumerate(labels) if other == label]
            samples = values[:, columns].reshape(-1, 1)
            observables.append(Observable(f"{kind} {label}", samples, periodic, unit))
        if kind == "dihedral" and len(terms) == 2:
            observables.append(Observable("phi_psi", values, True, unit))
    return observables
