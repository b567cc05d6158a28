"""Priors set from native structures, for models whose network is not trained yet.

One structure carries no thermal fluctuations, so each term gets its native
mean and an *assumed* thermal width at ``temperature_k``: the force constant
is kT/σ² with σ = :data:`BOND_WIDTH_NM` for bonds and :data:`ANGLE_WIDTH_RAD`
for angles. Dihedrals get a first-harmonic well, E = -kT R cos(φ - φ̄), at the
circular mean φ̄ of the native dihedrals of that type, R their resultant
length (R = 1 when all agree, 0 when they cancel). Repulsion gets σ at
:data:`REPULSION_SIGMA_FRACTION` of the closest native non-bonded distance of
that pair type and ε = kT. The training issue replaces this with Boltzmann
inversion of simulation data.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from gnnmd.graph import GraphBatch, pack
from gnnmd.nn.priors.base import canonical_tuples, tuple_keys
from gnnmd.nn.priors.geometry import bond_angles, bond_lengths, dihedral_angles
from gnnmd.topology import CGTopology
from gnnmd.units import kt_kj_per_mol

BOND_WIDTH_NM = 0.005
ANGLE_WIDTH_RAD = 0.1
REPULSION_SIGMA_FRACTION = 0.9
DIHEDRAL_HARMONICS = 3


def _grouped(keys: Tensor, values: Tensor) -> Tuple[Tensor, List[Tensor]]:
    """Sorted unique keys and the values belonging to each."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    return unique, [values[inverse == row] for row in range(unique.shape[0])]


def fit_native_priors(
    structures: Sequence[Tuple[CGTopology, np.ndarray]],
    vocabulary: Sequence[str],
    bead_to_prior_type: np.ndarray,
    num_prior_types: int,
    exclusion_order: int,
    cutoff_nm: float,
    temperature_k: float = 300.0,
) -> Dict[str, Dict[str, Tensor]]:
    """Prior tables (see :class:`gnnmd.nn.priors.PriorSet`) from native structures.

    Args:
        structures: (topology, positions (n, 3) nm) pairs, pooled.
        vocabulary: the model's bead types.
        bead_to_prior_type: (V,) prior type of each bead type.
        num_prior_types: P.
        exclusion_order: bonded exclusions of the non-bonded pairs.
        cutoff_nm: only pairs closer than this inform the repulsion.
        temperature_k: K, sets kT for force constants and dihedral wells.
    """
    kt = kt_kj_per_mol(temperature_k)
    to_prior = torch.as_tensor(bead_to_prior_type, dtype=torch.int64)
    measured: Dict[str, List[Tuple[Tensor, Tensor]]] = {
        name: [] for name in ("bonds", "angles", "dihedrals", "repulsion")
    }
    for topology, positions in structures:
        batch: GraphBatch = pack([topology], vocabulary, exclusion_order)
        x = torch.as_tensor(positions, dtype=torch.float64)
        prior_types = to_prior[batch.types]

        def keys_of(terms: Tensor, prior_types: Tensor = prior_types) -> Tensor:
            return tuple_keys(canonical_tuples(prior_types[terms]), num_prior_types)

        measured["bonds"].append((keys_of(batch.bonds), bond_lengths(x, batch.bonds, batch.graph_index)))
        measured["angles"].append((keys_of(batch.angles), bond_angles(x, batch.angles, batch.graph_index)))
        measured["dihedrals"].append(
            (keys_of(batch.dihedrals), dihedral_angles(x, batch.dihedrals, batch.graph_index))
        )
        pairs = batch.pairs.t()
        measured["repulsion"].append((keys_of(pairs), bond_lengths(x, pairs, batch.graph_index)))

    def pooled(name: str) -> Tuple[Tensor, List[Tensor]]:
        keys = torch.cat([k for k, _ in measured[name]])
        values = torch.cat([v for _, v in measured[name]])
        return _grouped(keys, values)

    bond_keys, bond_values = pooled("bonds")
    angle_keys, angle_values = pooled("angles")
    dihedral_keys, dihedral_values = pooled("dihedrals")
    pair_keys, pair_values = pooled("repulsion")

    cos_coefficients = torch.zeros(len(dihedral_values), DIHEDRAL_HARMONICS, dtype=torch.float64)
    sin_coefficients = torch.zeros_like(cos_coefficients)
    for row, phi in enumerate(dihedral_values):
        mean_cos, mean_sin = torch.cos(phi).mean(), torch.sin(phi).mean()
        # -kT R cos(φ - φ̄) = -kT (R cos φ̄) cos φ - kT (R sin φ̄) sin φ
        cos_coefficients[row, 0] = -kt * mean_cos
        sin_coefficients[row, 0] = -kt * mean_sin

    closest = torch.stack(
        [d.min() if d.numel() else torch.tensor(cutoff_nm, dtype=torch.float64) for d in pair_values]
    )
    return {
        "bonds": {
            "keys": bond_keys,
            "r0": torch.stack([v.mean() for v in bond_values]),
            "k": torch.full((len(bond_values),), kt / BOND_WIDTH_NM**2, dtype=torch.float64),
        },
        "angles": {
            "keys": angle_keys,
            "theta0": torch.stack([v.mean() for v in angle_values]),
            "k": torch.full((len(angle_values),), kt / ANGLE_WIDTH_RAD**2, dtype=torch.float64),
        },
        "dihedrals": {
            "keys": dihedral_keys,
            "cos_coefficients": cos_coefficients,
            "sin_coefficients": sin_coefficients,
        },
        "repulsion": {
            "keys": pair_keys,
            "sigma": REPULSION_SIGMA_FRACTION * closest.clamp(max=cutoff_nm),
            "epsilon": torch.full((len(pair_values),), kt, dtype=torch.float64),
        },
    }
