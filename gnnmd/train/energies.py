"""Per-type reference energies: the constant part of the energies, fitted in closed form."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from gnnmd.data.dataset import spread_indices
from gnnmd.nn.potential import CGPotential
from gnnmd.train.batches import BatchLoader

#: Training frames per molecule used to fit the per-type reference energies.
TYPE_ENERGY_FRAMES = 256


def fit_type_energies(
    model: CGPotential, loader: BatchLoader, frames_by_molecule: Mapping[int, np.ndarray], dtype: torch.dtype
) -> Tensor:
    """Per-type reference energies (T,) kJ/mol that best explain the data's energy offsets.

    For each molecule m the mean residual r_m = <E_ref - E_model> over (up to
    TYPE_ENERGY_FRAMES of) its frames is explained as Σ_t n_mt e_t, with n_mt
    the beads of type t in m, solved by least squares (the minimum-norm
    solution when the molecules do not determine every type). The result is
    added to the model's current ``type_energy``.
    """
    counts, residuals = [], []
    with torch.no_grad():
        for molecule, frames in sorted(frames_by_molecule.items()):
            chosen = frames[spread_indices(len(frames), min(len(frames), TYPE_ENERGY_FRAMES))]
            batch = loader(np.unique(chosen), dtype)
            predicted = model(batch.positions, batch.graphs)
            residuals.append(float((batch.energies - predicted).double().mean()))
            beads = loader.dataset.topologies[molecule].n_beads
            types = batch.graphs.types[:beads].cpu().numpy()
            counts.append(np.bincount(types, minlength=len(model.vocabulary)))
    solution = np.linalg.lstsq(np.array(counts, dtype=np.float64), np.array(residuals), rcond=None)[0]
    current = model.network.type_energy
    return current + torch.as_tensor(solution, dtype=current.dtype, device=current.device)
