"""Observables of CG trajectories (frames (F, n, 3) in nm): internal coordinates per term type.

Each observable is a named set of samples with a value range, compared between
a model's simulation and the reference data. Observables relative to a native
structure (RMSD, fraction of native contacts) are in :mod:`gnnmd.analysis.protein`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gnnmd.nn.priors.geometry import Measure, bond_angles, bond_lengths, dihedral_angles, frame_values
from gnnmd.topology import CGTopology


@dataclass(frozen=True)
class Observable:
    """Samples (S, D) of a D-dimensional observable (D = 1 or 2).

    ``periodic`` observables (dihedrals) are binned on (-π, π]; the others on the
    range spanned by the samples being compared. ``labels`` are the axis labels,
    one per dimension, written "symbol (unit)" (e.g. "φ (rad)"); plots fall back on
    the name and unit without them.
    """

    name: str
    samples: np.ndarray
    periodic: bool
    unit: str
    labels: tuple[str, ...] = ()


def measure(frames: np.ndarray, terms: np.ndarray, function: Measure) -> np.ndarray:
    """(F, T) float64 values of ``function`` (e.g. ``dihedral_angles``) for terms (T, k) in each of
    frames (F, n, 3) nm (shared with the prior fit)."""
    positions = torch.as_tensor(frames, dtype=torch.float64)
    return frame_values(positions, torch.tensor(np.asarray(terms), dtype=torch.int64), function).numpy()


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
        values = measure(frames, terms, function)
        labels = [_label(topology, t) for t in terms]
        for label in sorted(set(labels)):
            columns = [i for i, other in enumerate(labels) if other == label]
            samples = values[:, columns].reshape(-1, 1)
            observables.append(Observable(f"{kind} {label}", samples, periodic, unit))
        if kind == "dihedral" and len(terms) == 2:
            observables.append(Observable("phi_psi", values, True, unit, ("φ (rad)", "ψ (rad)")))
    return observables
