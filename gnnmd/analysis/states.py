"""States of a validation's main observable: populations with statistical errors, noise floors.

The main observable is the joint (φ, ψ) map for a molecule with exactly two backbone
dihedrals (alanine dipeptide) and the joint (CA RMSD, Q) map for a shipped protein. Its
states, with the definitions reported beside the numbers:

=========  ==========================================================================
alpha_R    φ < 0 and -120° < ψ < 50°
beta       φ < 0 and (ψ ≥ 50° or ψ ≤ -120°)
alpha_L    φ ≥ 0
folded     CA RMSD < 0.2 nm and Q > 0.7 (strict: the loose RMSD < 0.3 nm alone counts
           unfolded priors-only frames as folded)
unfolded   every other frame
=========  ==========================================================================

A population's error is the standard error over independent groups of frames: the
replicas of a simulation, the trajectories of a reference that records them, else contiguous
blocks of its frames. The noise floor of a reference is the JS divergence between its two
halves (of its trajectories, when recorded).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

STATE_DEFINITIONS = {
    "phi_psi": {
        "alpha_R": "phi < 0 and -120 deg < psi < 50 deg",
        "beta": "phi < 0 and (psi >= 50 deg or psi <= -120 deg)",
        "alpha_L": "phi >= 0",
    },
    "rmsd_q": {
        "folded": "CA RMSD < 0.2 nm and Q > 0.7",
        "unfolded": "not folded",
    },
}
FOLDED_RMSD_NM = 0.2
FOLDED_Q = 0.7
#: Contiguous blocks a reference is split into for its populations' errors.
REFERENCE_BLOCKS = 10


def main_observable(names: Sequence[str]) -> str | None:
    """The observable a validation is judged on: "rmsd_q" for proteins, "phi_psi" for dipeptides."""
    for name in ("rmsd_q", "phi_psi"):
        if name in names:
            return name
    return None


def state_masks(observable: str, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Per state, (F,) bool: which samples (F, 2) of ``observable`` are in it."""
    if observable == "phi_psi":
        phi, psi = samples[:, 0], samples[:, 1]
        helix = (psi > math.radians(-120.0)) & (psi < math.radians(50.0))
        return {"alpha_R": (phi < 0) & helix, "beta": (phi < 0) & ~helix, "alpha_L": phi >= 0}
    if observable == "rmsd_q":
        folded = (samples[:, 0] < FOLDED_RMSD_NM) & (samples[:, 1] > FOLDED_Q)
        return {"folded": folded, "unfolded": ~folded}
    raise ValueError(f"no states defined for observable {observable!r}; defined: {sorted(STATE_DEFINITIONS)}")


def standard_error(values: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of the mean of ``values`` (F,) from the means of independent ``groups``
    ((F,) ids): frames within a group are correlated, groups are not. NaN for one group."""
    labels = np.unique(groups)
    if len(labels) < 2:
        return float("nan")
    means = np.array([values[groups == label].mean() for label in labels])
    return float(means.std(ddof=1) / math.sqrt(len(labels)))


def populations(observable: str, samples: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, float]]:
    """Per state {"population", "error"}: the fraction of frames, and the standard error of the
    per-group fractions (groups (F,) ids: independent replicas or reference blocks)."""
    return {
        state: {"population": float(mask.mean()), "error": standard_error(mask.astype(np.float64), groups)}
        for state, mask in state_masks(observable, samples).items()
    }


def reference_blocks(count: int, blocks: int = REFERENCE_BLOCKS) -> np.ndarray:
    """(count,) block ids: ``blocks`` contiguous blocks of a reference's frames."""
    return np.minimum(np.arange(count) * blocks // max(count, 1), blocks - 1)


def noise_floor(
    samples: np.ndarray,
    divergence: Callable[[np.ndarray, np.ndarray], float],
    groups: np.ndarray | None = None,
) -> float:
    """``divergence`` between two halves of reference samples (F, d): the first and second half of
    the frames, or, with ``groups`` ((F,) trajectory ids), of the trajectories."""
    if groups is None:
        half = len(samples) // 2
        return float(divergence(samples[:half], samples[half:]))
    labels = np.unique(groups)
    first = np.isin(groups, labels[: len(labels) // 2])
    return float(divergence(samples[first], samples[~first]))
