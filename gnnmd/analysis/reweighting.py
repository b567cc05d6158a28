"""State populations from runs biased along one torsion (metadynamics, :mod:`gnnmd.sim.metadynamics`).

A bias that depends on the torsion s alone leaves the distribution of everything else at fixed s
as it is. So with the free energy F(s) the bias has built, a state's population is

    P(state) = Σ_b P_F(b) · P(state | b)

over bins b of s: P_F(b) ∝ ∫_b exp(−F(s) / k_B T) ds from the free energy, P(state | b) the share
of the biased samples in bin b that are in the state. Bins without a sample are left out and
the others renormalised; the free-energy weight left out is reported (``unsampled_weight``) so
a run too short to have visited a region says so. Alanine dipeptide's α_L (φ ≥ 0) is a set of
whole φ bins and comes from F(φ) alone; α_R and β share the φ < 0 bins by ψ.

Each group of walkers has its own bias and samples; the populations are the mean over groups
and their error the standard error of that mean (NaN for one group).
"""

from __future__ import annotations

import math

import numpy as np

from gnnmd.analysis.states import STATE_DEFINITIONS, state_masks
from gnnmd.units import kt_kj_per_mol

#: Bins of the biased torsion (5° each; 0 is a bin edge, so φ ≥ 0 is a set of whole bins).
TORSION_BINS = 72


def bin_weights(free_energy: np.ndarray, temperature_k: float, bins: int = TORSION_BINS) -> np.ndarray:
    """(bins,) probabilities of equal bins of s over [−π, π) from F (G,) kJ/mol at the grid points
    −π + k · 2π/G (G a multiple of ``bins``)."""
    points = len(free_energy)
    if points % bins:
        raise ValueError(f"a grid of {points} points cannot be cut into {bins} equal bins")
    energy = np.asarray(free_energy, dtype=np.float64)
    boltzmann = np.exp(-(energy - energy.min()) / kt_kj_per_mol(temperature_k))
    weights = boltzmann.reshape(bins, points // bins).sum(axis=1)
    return weights / weights.sum()


def torsion_bins(s: np.ndarray, bins: int = TORSION_BINS) -> np.ndarray:
    """(F,) int64: the bin of each torsion s (F,) rad, angles taken modulo 2π."""
    position = np.remainder(np.asarray(s, dtype=np.float64) + math.pi, 2.0 * math.pi)
    return np.minimum((position / (2.0 * math.pi / bins)).astype(np.int64), bins - 1)


def group_populations(
    observable: str, samples: np.ndarray, torsion_column: int, free_energy: np.ndarray,
    temperature_k: float, bins: int = TORSION_BINS,
) -> tuple[dict[str, float], float]:  # fmt: skip
    """One group's populations {state: P} of ``observable``'s states from its biased samples (F, D)
    (column ``torsion_column`` the biased torsion) and its free energy (G,) kJ/mol; and the
    free-energy weight of the bins it never sampled."""
    weights = bin_weights(free_energy, temperature_k, bins)
    owner = torsion_bins(samples[:, torsion_column], bins)
    counts = np.bincount(owner, minlength=bins).astype(np.float64)
    sampled = counts > 0
    kept = weights[sampled].sum()
    if kept == 0:
        raise ValueError("no sample lies in a bin of non-zero free-energy weight")
    out = {}
    for state, mask in state_masks(observable, samples).items():
        inside = np.bincount(owner, weights=mask.astype(np.float64), minlength=bins)
        share = np.divide(inside, counts, out=np.zeros(bins), where=sampled)
        out[state] = float((weights * share)[sampled].sum() / kept)
    return out, float(1.0 - kept)


def biased_populations(
    observable: str, samples: np.ndarray, groups: np.ndarray, torsion_column: int,
    free_energies: np.ndarray, temperature_k: float, bins: int = TORSION_BINS,
) -> dict:  # fmt: skip
    """Populations of ``observable``'s states from biased samples (F, D) of walker groups
    ``groups`` (F,) (ids 0..K−1) and the groups' free energies (K, G) kJ/mol along the torsion in
    column ``torsion_column``.

    Returns {"populations": {state: {"population", "error"}}, "per_group": [{state: P}, ...],
    "unsampled_weight": the largest of the groups', "definitions": the states' definitions}.
    """
    per_group, unsampled = [], []
    for group in range(len(free_energies)):
        mine = groups == group
        if not mine.any():
            raise ValueError(f"walker group {group} has no samples")
        populations, missing = group_populations(
            observable, samples[mine], torsion_column, free_energies[group], temperature_k, bins
        )
        per_group.append(populations)
        unsampled.append(missing)
    summary = {}
    for state in per_group[0]:
        values = np.array([p[state] for p in per_group])
        error = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
        summary[state] = {"population": float(values.mean()), "error": float(error)}
    return {
        "populations": summary,
        "per_group": per_group,
        "unsampled_weight": float(max(unsampled)),
        "definitions": STATE_DEFINITIONS[observable],
    }
