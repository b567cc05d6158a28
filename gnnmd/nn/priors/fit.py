"""Fitting prior parameters from structures: Boltzmann inversion of data, or native structures.

Both fits first measure every term's internal coordinate (bond length, angle,
dihedral, non-bonded distance) in every frame and group the values by the
term's canonical prior-type key (:func:`measure_terms`).

**Boltzmann inversion** (:func:`fit_boltzmann_priors`), for frames sampled at
temperature T: the potential of mean force of a coordinate is
U(x) = -kT ln(p(x) / J(x)), with the Jacobian J = r² for bond lengths, sin θ for
angles and 1 for dihedrals. U is histogrammed and fitted by count-weighted least
squares: a parabola ½k(x - x₀)² for bonds and angles, a Fourier series
Σₙ aₙ cos nφ + bₙ sin nφ for dihedrals. Repulsion gets σ at
:data:`REPULSION_SIGMA_FRACTION` of the closest non-bonded distance seen for that
pair type and ε = kT.

**Native structures** (:func:`fit_native_priors`), for untrained models: one
structure has no fluctuations, so each term gets its native mean and an *assumed*
thermal width (force constant kT/σ² with σ = :data:`BOND_WIDTH_NM`, or
:data:`ANGLE_WIDTH_RAD`); dihedrals a first-harmonic well -kT R cos(φ - φ̄) at the
circular mean φ̄ of that type, R the mean resultant length.

Units: nm, rad, kJ/mol, K.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from gnnmd.errors import BeadTypeError
from gnnmd.graph import pack
from gnnmd.nn.priors.base import canonical_tuples, tuple_keys
from gnnmd.nn.priors.geometry import FRAME_CHUNK, bond_angles, bond_lengths, dihedral_angles, frame_values
from gnnmd.topology import CGTopology
from gnnmd.units import kt_kj_per_mol

BOND_WIDTH_NM = 0.005
ANGLE_WIDTH_RAD = 0.1
REPULSION_SIGMA_FRACTION = 0.9
DIHEDRAL_HARMONICS = 3
HISTOGRAM_BINS = 80
#: Fewest samples of one term type that a Boltzmann inversion accepts.
MIN_SAMPLES = 100
#: Largest Σ|a_n| + |b_n| of a fitted dihedral prior, in kT: beyond it the fit is refused (see _fit_fourier).
MAX_DIHEDRAL_AMPLITUDE_KT = 200.0

Tables = Dict[str, Dict[str, Tensor]]
Measured = Dict[str, Tuple[Tensor, List[Tensor]]]


def measure_terms(
    structures: Sequence[Tuple[CGTopology, np.ndarray]],
    vocabulary: Sequence[str],
    bead_to_prior_type: np.ndarray,
    num_prior_types: int,
    exclusion_order: int,
) -> Measured:
    """Internal coordinates of every term, grouped by canonical prior-type key.

    Args:
        structures: (topology, positions) with positions (n, 3) or (F, n, 3) in nm.
        vocabulary, bead_to_prior_type, num_prior_types: the model's type maps.
        exclusion_order: bonded exclusions of the non-bonded pairs.

    Returns:
        term ("bonds", "angles", "dihedrals", "repulsion") -> (sorted unique keys (K,),
        list of K tensors of values: nm for bonds, rad for angles and dihedrals, and for
        repulsion one value per key, the closest approach in nm over all frames).
    """
    to_prior = torch.as_tensor(bead_to_prior_type, dtype=torch.int64)
    keys: Dict[str, List[Tensor]] = {t: [] for t in ("bonds", "angles", "dihedrals", "repulsion")}
    values: Dict[str, List[Tensor]] = {t: [] for t in keys}
    bonded = {"bonds": bond_lengths, "angles": bond_angles, "dihedrals": dihedral_angles}
    for topology, positions in structures:
        frames = torch.as_tensor(np.asarray(positions, dtype=np.float64)).reshape(-1, topology.n_beads, 3)
        batch = pack([topology], vocabulary, exclusion_order)
        prior_types = to_prior[batch.types]
        for name, function in bonded.items():
            indices = getattr(batch, name)
            term_keys = tuple_keys(canonical_tuples(prior_types[indices]), num_prior_types)
            keys[name].append(term_keys.repeat(len(frames)))  # frame-major, like the flattened values
            values[name].append(frame_values(frames, indices, function).reshape(-1))
        # Only the closest approach per pair type matters: one value per pair, reduced chunk by
        # chunk, so memory is bounded by the pair count rather than pairs x frames.
        pairs = batch.pairs.t()
        keys["repulsion"].append(tuple_keys(canonical_tuples(prior_types[pairs]), num_prior_types))
        values["repulsion"].append(_closest_approach(frames, pairs))
        unique, closest = _closest(torch.cat(keys["repulsion"]), torch.cat(values["repulsion"]))
        keys["repulsion"], values["repulsion"] = [unique], [closest]
    return {name: _group(torch.cat(keys[name]), torch.cat(values[name])) for name in keys}


def _closest_approach(frames: Tensor, pairs: Tensor) -> Tensor:
    """(P,) nm: the smallest distance of each pair (P, 2) over all frames (F, n, 3)."""
    closest = torch.full((pairs.shape[0],), float("inf"), dtype=frames.dtype)
    for start in range(0, len(frames), FRAME_CHUNK):
        distances = frame_values(frames[start : start + FRAME_CHUNK], pairs, bond_lengths)
        closest = torch.minimum(closest, distances.amin(dim=0))
    return closest


def _closest(keys: Tensor, values: Tensor) -> Tuple[Tensor, Tensor]:
    unique, inverse = torch.unique(keys, return_inverse=True)
    closest = torch.full((unique.shape[0],), float("inf"), dtype=values.dtype)
    return unique, closest.scatter_reduce(0, inverse, values, reduce="amin")


def _group(keys: Tensor, values: Tensor) -> Tuple[Tensor, List[Tensor]]:
    unique, inverse = torch.unique(keys, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=unique.shape[0]).tolist()
    return unique, list(torch.split(values[order], counts))


def _repulsion_table(measured: Measured, cutoff_nm: float, kt: float) -> Dict[str, Tensor]:
    keys, values = measured["repulsion"]
    closest = torch.stack([v.min() for v in values]) if values else torch.zeros(0, dtype=torch.float64)
    return {
        "keys": keys,
        "sigma": REPULSION_SIGMA_FRACTION * closest.clamp(max=cutoff_nm),
        "epsilon": torch.full((len(values),), kt, dtype=torch.float64),
    }


def fit_native_priors(
    structures: Sequence[Tuple[CGTopology, np.ndarray]],
    vocabulary: Sequence[str],
    bead_to_prior_type: np.ndarray,
    num_prior_types: int,
    exclusion_order: int,
    cutoff_nm: float,
    temperature_k: float = 300.0,
) -> Tables:
    """Prior tables (see :class:`gnnmd.nn.priors.PriorSet`) from native structures (n, 3) nm."""
    kt = kt_kj_per_mol(temperature_k)
    measured = measure_terms(structures, vocabulary, bead_to_prior_type, num_prior_types, exclusion_order)
    bond_keys, bonds = measured["bonds"]
    angle_keys, angles = measured["angles"]
    dihedral_keys, dihedrals = measured["dihedrals"]
    cos_coefficients = torch.zeros(len(dihedrals), DIHEDRAL_HARMONICS, dtype=torch.float64)
    sin_coefficients = torch.zeros_like(cos_coefficients)
    for row, phi in enumerate(dihedrals):
        # -kT R cos(φ - φ̄) = -kT (R cos φ̄) cos φ - kT (R sin φ̄) sin φ
        cos_coefficients[row, 0] = -kt * torch.cos(phi).mean()
        sin_coefficients[row, 0] = -kt * torch.sin(phi).mean()
    return {
        "bonds": {
            "keys": bond_keys,
            "r0": torch.stack([v.mean() for v in bonds]),
            "k": torch.full((len(bonds),), kt / BOND_WIDTH_NM**2, dtype=torch.float64),
        },
        "angles": {
            "keys": angle_keys,
            "theta0": torch.stack([v.mean() for v in angles]),
            "k": torch.full((len(angles),), kt / ANGLE_WIDTH_RAD**2, dtype=torch.float64),
        },
        "dihedrals": {
            "keys": dihedral_keys,
            "cos_coefficients": cos_coefficients,
            "sin_coefficients": sin_coefficients,
        },
        "repulsion": _repulsion_table(measured, cutoff_nm, kt),
    }


def _histogram_pmf(
    samples: np.ndarray, kt: float, jacobian: str, bins: int, value_range: Tuple[float, float] | None = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin centres, PMF -kT ln(p/J) (kJ/mol) and counts of the non-empty bins."""
    counts, edges = np.histogram(samples, bins=bins, range=value_range)
    centres = 0.5 * (edges[1:] + edges[:-1])
    filled = counts > 0
    jacobians = {"r2": centres**2, "sin": np.sin(centres), "none": np.ones_like(centres)}[jacobian]
    filled &= jacobians > 0
    density = counts[filled] / jacobians[filled]
    return centres[filled], -kt * np.log(density), counts[filled].astype(np.float64)


def _fit_parabola(samples: np.ndarray, kt: float, jacobian: str, label: str) -> Tuple[float, float]:
    """(k, x0) of ½k(x - x0)² fitted to the PMF of ``samples``."""
    x, pmf, counts = _histogram_pmf(samples, kt, jacobian, HISTOGRAM_BINS)
    design = np.stack([x * x, x, np.ones_like(x)], axis=1)
    weights = np.sqrt(counts)
    (a, b, _), *_ = np.linalg.lstsq(design * weights[:, None], pmf * weights, rcond=None)
    if not a > 0:
        raise ValueError(
            f"{label}: the potential of mean force is not convex (curvature {2 * a:.3g}); no harmonic fit"
        )
    return 2.0 * a, -b / (2.0 * a)


def _fit_fourier(samples: np.ndarray, kt: float, harmonics: int) -> Tuple[np.ndarray, np.ndarray]:
    """(a_n, b_n), n = 1..harmonics, of Σ a_n cos nφ + b_n sin nφ fitted to the PMF of ``samples``.

    A least-squares Fourier fit is only trustworthy where the data are: a narrow
    distribution (a planar peptide dihedral of a protein) fills a few bins, and a
    3-harmonic fit through them can place deep wells where no sample ever went,
    with coefficients of 10⁴–10⁵ kJ/mol that make any time step unstable. So the
    fit drops harmonics until its global minimum lies inside the sampled range and
    its amplitude is within :data:`MAX_DIHEDRAL_AMPLITUDE_KT` kT; failing that it
    falls back to the maximum-likelihood von Mises well -kT κ cos(φ - μ), one
    smooth minimum at the circular mean. Unused harmonics are zero.
    """
    phi, pmf, counts = _histogram_pmf(samples, kt, "none", HISTOGRAM_BINS, (-np.pi, np.pi))
    a, b = np.zeros(harmonics), np.zeros(harmonics)
    for used in range(harmonics, 0, -1):
        fitted = _least_squares_fourier(phi, pmf, counts, used)
        if fitted is not None and _well_behaved(*fitted, phi, kt):
            a[:used], b[:used] = fitted
            return a, b
    a[0], b[0] = _von_mises(samples, kt)
    return a, b


def _least_squares_fourier(
    phi: np.ndarray, pmf: np.ndarray, counts: np.ndarray, harmonics: int
) -> Tuple[np.ndarray, np.ndarray] | None:
    """Count-weighted fit of ``harmonics`` harmonics; None when the bins cannot determine it."""
    if len(phi) < 2 * harmonics + 2:
        return None
    n = np.arange(1, harmonics + 1)
    design = np.concatenate(
        [np.ones((len(phi), 1)), np.cos(np.outer(phi, n)), np.sin(np.outer(phi, n))], axis=1
    )
    weights = np.sqrt(counts)
    solution, *_ = np.linalg.lstsq(design * weights[:, None], pmf * weights, rcond=None)
    return solution[1 : harmonics + 1], solution[harmonics + 1 :]


def fourier_energy(
    angles: np.ndarray, cos_coefficients: np.ndarray, sin_coefficients: np.ndarray
) -> np.ndarray:
    """Σₙ aₙ cos nφ + bₙ sin nφ (kJ/mol) at ``angles`` (rad); n = 1..H."""
    n = np.arange(1, len(cos_coefficients) + 1)
    return np.cos(np.outer(angles, n)) @ cos_coefficients + np.sin(np.outer(angles, n)) @ sin_coefficients


def _well_behaved(a: np.ndarray, b: np.ndarray, sampled: np.ndarray, kt: float) -> bool:
    """Bounded amplitude, and the fitted minimum among the sampled bin centres (within one bin)."""
    if np.abs(a).sum() + np.abs(b).sum() > MAX_DIHEDRAL_AMPLITUDE_KT * kt:
        return False
    grid = np.linspace(-np.pi, np.pi, 4 * HISTOGRAM_BINS, endpoint=False)
    energy = fourier_energy(grid, a, b)
    lowest = grid[np.argmin(energy)]
    gap = np.abs(np.angle(np.exp(1j * (sampled - lowest)))).min()
    return bool(gap <= 2 * np.pi / HISTOGRAM_BINS)


def _von_mises(samples: np.ndarray, kt: float) -> Tuple[float, float]:
    """(a_1, b_1) of -kT κ cos(φ - μ): the von Mises fit (κ by Banerjee et al. 2005, from R)."""
    mean = np.exp(1j * samples).mean()
    resultant = min(abs(mean), 0.999)
    kappa = resultant * (2.0 - resultant**2) / (1.0 - resultant**2)
    mu = np.angle(mean)
    return -kt * kappa * np.cos(mu), -kt * kappa * np.sin(mu)


def _check_samples(
    name: str, keys: Tensor, values: List[Tensor], prior_type_names: Sequence[str], order: int
) -> None:
    for key, samples in zip(keys.tolist(), values, strict=True):
        if samples.numel() < MIN_SAMPLES:
            types, count = [], len(prior_type_names)
            for _ in range(order):
                key, digit = divmod(key, count)
                types.append(prior_type_names[digit])
            raise BeadTypeError(
                f"{name} prior {'-'.join(reversed(types))}: only {samples.numel()} samples; "
                f"Boltzmann inversion needs at least {MIN_SAMPLES}"
            )


def fit_boltzmann_priors(
    structures: Sequence[Tuple[CGTopology, np.ndarray]],
    vocabulary: Sequence[str],
    bead_to_prior_type: np.ndarray,
    prior_type_names: Sequence[str],
    exclusion_order: int,
    cutoff_nm: float,
    temperature_k: float,
    dihedral_harmonics: int = DIHEDRAL_HARMONICS,
) -> Tables:
    """Prior tables by Boltzmann inversion of frames (F, n, 3) nm sampled at ``temperature_k`` K."""
    kt = kt_kj_per_mol(temperature_k)
    measured = measure_terms(
        structures, vocabulary, bead_to_prior_type, len(prior_type_names), exclusion_order
    )
    tables: Tables = {"repulsion": _repulsion_table(measured, cutoff_nm, kt)}
    for name, jacobian, centre, order in (("bonds", "r2", "r0", 2), ("angles", "sin", "theta0", 3)):
        keys, values = measured[name]
        _check_samples(name, keys, values, prior_type_names, order)
        fits = [
            _fit_parabola(v.numpy(), kt, jacobian, f"{name} key {k}")
            for k, v in zip(keys.tolist(), values, strict=True)
        ]
        tables[name] = {
            "keys": keys,
            "k": torch.tensor([k for k, _ in fits], dtype=torch.float64),
            centre: torch.tensor([x0 for _, x0 in fits], dtype=torch.float64),
        }
    keys, values = measured["dihedrals"]
    _check_samples("dihedrals", keys, values, prior_type_names, 4)
    fits = [_fit_fourier(v.numpy(), kt, dihedral_harmonics) for v in values]
    tables["dihedrals"] = {
        "keys": keys,
        "cos_coefficients": torch.tensor(np.array([a for a, _ in fits]), dtype=torch.float64).reshape(
            -1, dihedral_harmonics
        ),
        "sin_coefficients": torch.tensor(np.array([b for _, b in fits]), dtype=torch.float64).reshape(
            -1, dihedral_harmonics
        ),
    }
    return tables
