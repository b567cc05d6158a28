"""Iterative Boltzmann inversion (IBI) of dihedral priors: the priors alone reproduce the data's
dihedral distributions.

A dihedral prior fitted by Boltzmann inversion of its own distribution, U(φ) = −kT ln p_ref(φ)
(:func:`gnnmd.nn.priors.fit.fit_boltzmann_priors`), reproduces p_ref only if the dihedral were
independent of every other coordinate. In alanine dipeptide φ and ψ are coupled to the backbone
angles: the priors alone put α_R at 0.25 where the data have 0.33, and a network trained on top
does not move the balance of the two basins, which hangs on the mean force across the sparsely
sampled barrier between them. IBI (Reith, Pütz and Müller-Plathe, J. Comput. Chem. 24, 1624,
2003) corrects each prior by what a simulation of the priors alone gets wrong:

    U_{k+1}(φ) = U_k(φ) + λ kT ln(p_k(φ) / p_ref(φ)),

refitted to the same Fourier series (the fit's safeguards as in Boltzmann inversion). This
module is the update; :mod:`gnnmd.train.prior_refinement` runs the simulations. Units: rad,
kJ/mol.
"""

from __future__ import annotations

import numpy as np

from gnnmd.nn.priors.fit import HISTOGRAM_BINS, _least_squares_fourier, _well_behaved, fourier_energy

#: Added to every bin's count before taking ln(p_k / p_ref): a bin the simulation never visited
#: pulls the potential down by a bounded amount instead of an infinite one.
PSEUDO_COUNT = 0.5


def corrected_dihedral(
    cos_coefficients: np.ndarray,
    sin_coefficients: np.ndarray,
    reference: np.ndarray,
    simulated: np.ndarray,
    kt: float,
    damping: float = 1.0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """One IBI step of a dihedral prior: its new (cos, sin) coefficients (H,), or None when the
    refit is not well behaved (the caller keeps the old ones).

    Args:
        cos_coefficients, sin_coefficients: (H,) the prior now, kJ/mol.
        reference: dihedral samples (rad) of the data.
        simulated: samples of a simulation with the prior as it is now.
        kt: kJ/mol.
        damping: λ, the share of the correction applied (1: full IBI step).
    """
    value_range = (-np.pi, np.pi)
    reference_counts, edges = np.histogram(reference, bins=HISTOGRAM_BINS, range=value_range)
    simulated_counts, _ = np.histogram(simulated, bins=HISTOGRAM_BINS, range=value_range)
    centres = 0.5 * (edges[1:] + edges[:-1])
    seen = reference_counts > 0  # the update is defined where the data are
    p_reference = (reference_counts + PSEUDO_COUNT) / (reference_counts.sum() + PSEUDO_COUNT * HISTOGRAM_BINS)
    p_simulated = (simulated_counts + PSEUDO_COUNT) / (simulated_counts.sum() + PSEUDO_COUNT * HISTOGRAM_BINS)
    target = fourier_energy(centres, cos_coefficients, sin_coefficients) + damping * kt * np.log(
        p_simulated / p_reference
    )
    harmonics = len(cos_coefficients)
    fitted = _least_squares_fourier(
        centres[seen], target[seen], reference_counts[seen].astype(float), harmonics
    )
    if fitted is None or not _well_behaved(*fitted, centres[seen], kt):
        return None
    return fitted
