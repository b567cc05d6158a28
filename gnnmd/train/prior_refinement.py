"""Dihedral priors refined by iterative Boltzmann inversion before the network is trained.

Each iteration simulates the model with its network switched off (the priors alone), from
frames spread over the data, and corrects every dihedral prior by what that simulation gets
wrong (:func:`gnnmd.nn.priors.ibi.corrected_dihedral`). Bonds, angles and the repulsion keep
their Boltzmann-inversion fits. ``gnnmd train --refine-dihedral-priors`` runs it once before the
first epoch; the prior tables are part of the training state (a resumed run keeps them) and
the settings part of the run's identity (a resume with others is refused). Units: nm, rad,
kJ/mol, K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from gnnmd.analysis.distributions import histogram, jensen_shannon
from gnnmd.analysis.validate import ValidationSettings, simulate
from gnnmd.data.dataset import spread_indices
from gnnmd.engine import LangevinSettings
from gnnmd.nn.potential import CGPotential, priors_only
from gnnmd.nn.priors.fit import measure_terms
from gnnmd.nn.priors.ibi import corrected_dihedral
from gnnmd.topology import CGTopology
from gnnmd.units import kt_kj_per_mol


@dataclass(frozen=True)
class RefinementSettings:
    """Iterations of IBI, and each iteration's simulation of the priors alone (2 fs steps)."""

    iterations: int = 3
    replicas: int = 256
    steps: int = 20000
    damping: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.replicas < 1 or self.steps < 12:
            raise ValueError(f"prior refinement needs iterations, replicas >= 1 and steps >= 12: {self}")
        if not 0.0 < self.damping <= 1.0:
            raise ValueError(f"damping must be in (0, 1], got {self.damping}")


Structures = Sequence[tuple[CGTopology, np.ndarray]]


def refine_dihedral_priors(
    model: CGPotential, structures: Structures, temperature_k: float, settings: RefinementSettings
) -> list[dict[int, float]]:
    """Refine ``model``'s dihedral priors in place from reference ``structures`` ((topology, (F, n, 3)
    nm) per molecule); returns per iteration the JS divergence of each dihedral key's distribution
    (priors alone against the data) measured before that iteration's correction."""
    kt = kt_kj_per_mol(temperature_k)
    reference = _dihedral_samples(model, structures)
    table = model.priors.dihedrals
    history = []
    for iteration in range(settings.iterations):
        simulated = _dihedral_samples(
            model, _simulate_priors(model, structures, temperature_k, settings, iteration)
        )
        history.append({key: _divergence(reference[key], simulated[key]) for key in reference})
        with torch.no_grad():
            for row, key in enumerate(table.keys.tolist()):
                if key not in reference or key not in simulated:
                    continue
                cos, sin = (
                    table.cos_coefficients[row].double().numpy(),
                    table.sin_coefficients[row].double().numpy(),
                )
                update = corrected_dihedral(cos, sin, reference[key], simulated[key], kt, settings.damping)
                if update is not None:
                    table.cos_coefficients[row] = torch.as_tensor(
                        update[0], dtype=table.cos_coefficients.dtype
                    )
                    table.sin_coefficients[row] = torch.as_tensor(
                        update[1], dtype=table.sin_coefficients.dtype
                    )
    return history


def _simulate_priors(
    model: CGPotential,
    structures: Structures,
    temperature_k: float,
    settings: RefinementSettings,
    iteration: int,
) -> list[tuple[CGTopology, np.ndarray]]:
    run = ValidationSettings(
        replicas=settings.replicas, steps=settings.steps, equilibration_steps=settings.steps // 10,
        langevin=LangevinSettings(timestep_fs=2.0, temperature_k=temperature_k),
        seed=settings.seed + iteration, priors_only=False,
    )  # fmt: skip
    alone = priors_only(model)
    out = []
    for topology, frames in structures:
        starts = frames[spread_indices(len(frames), settings.replicas)]
        simulated, _, _ = simulate(alone, topology, starts, run)
        out.append((topology, simulated))
    return out


def _dihedral_samples(model: CGPotential, structures: Structures) -> dict[int, np.ndarray]:
    priors = model.priors
    keys, values = measure_terms(
        structures, model.vocabulary, priors.bead_to_prior_type.numpy(), len(priors.prior_types),
        model.config.exclusion_order,
    )["dihedrals"]  # fmt: skip
    return {int(k): v.numpy() for k, v in zip(keys.tolist(), values, strict=True)}


def _divergence(reference: np.ndarray, simulated: np.ndarray) -> float:
    value_range = [(-np.pi, np.pi)]
    return jensen_shannon(
        histogram(reference[:, None], 60, value_range), histogram(simulated[:, None], 60, value_range)
    )
