"""Histograms, free-energy surfaces and divergences between sampled distributions.

Divergences are Jensen-Shannon in nats (0 = identical, ln 2 = disjoint),
computed on a shared binning with a small pseudo-count so that empty bins
stay finite. Free energies are -kT ln p in kJ/mol, shifted to a minimum of 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gnnmd.units import kt_kj_per_mol

PSEUDO_COUNT = 1e-6


def histogram(samples: np.ndarray, bins: int, value_range: Sequence[tuple[float, float]]) -> np.ndarray:
    """Normalised histogram of (S, D) samples, D = 1 or 2, over ``value_range`` per dimension."""
    samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    counts, _ = np.histogramdd(samples, bins=bins, range=value_range)
    total = counts.sum()
    if total == 0:
        raise ValueError("no samples fall inside the histogram range")
    return counts / total


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats) of two histograms on the same bins."""
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} and {q.shape}")
    from scipy.spatial.distance import jensenshannon

    # scipy gives the Jensen-Shannon distance, the square root of the divergence.
    return float(jensenshannon((p + PSEUDO_COUNT).ravel(), (q + PSEUDO_COUNT).ravel()) ** 2)


def free_energy(p: np.ndarray, temperature_k: float) -> np.ndarray:
    """-kT ln p (kJ/mol), minimum 0, NaN where p = 0."""
    with np.errstate(divide="ignore"):
        energy = -kt_kj_per_mol(temperature_k) * np.log(p)
    energy[~np.isfinite(energy)] = np.nan
    return energy - np.nanmin(energy)
