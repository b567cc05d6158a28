"""The training loss: squared errors of forces, energies and torsional forces, summed per batch.

loss = w_F·MSE(F) + w_E·MSE(E) + w_τ·MSE(τ): forces per component (kJ/mol/nm)², energies per
frame (kJ/mol)², relative to the mean error of the molecule's frames in the batch
(:func:`molecule_mean_errors`), and the generalized forces along the bonded graph's torsions
per torsion (kJ/mol/rad)² (:mod:`gnnmd.torsions`). The torsional term weighs, beside the
Cartesian one, the part of the force error that sets the free energy along the torsions.

Each batch gives a vector of sums, :data:`SUM_FIELDS`, so that sums over batches and ranks
give the epoch's errors exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gnnmd.distributed import all_reduce_sum
from gnnmd.torsions import torsional_forces
from gnnmd.train.batches import ForceBatch
from gnnmd.train.config import TrainingConfig

#: What a vector of error sums holds, in order.
SUM_FIELDS = ("force_squared", "force_components", "energy_squared", "energy_frames",
              "torsion_squared", "torsions")  # fmt: skip


@dataclass(frozen=True)
class ErrorSums:
    """Summed errors of a set of frames: ``sums`` (6,) float64 in the order of :data:`SUM_FIELDS`:
    Σ ΔF² (kJ/mol/nm)², force components, Σ ΔE² (kJ/mol)², frames with energies, Σ Δτ²
    (kJ/mol/rad)², torsions."""

    sums: Tensor

    def __post_init__(self) -> None:
        if tuple(self.sums.shape) != (len(SUM_FIELDS),):
            raise ValueError(f"error sums hold {SUM_FIELDS}, got a tensor of shape {tuple(self.sums.shape)}")

    def _rmse(self, squared: int) -> float | None:
        if not self.sums[squared + 1] > 0:
            return None
        return float(torch.sqrt(self.sums[squared] / self.sums[squared + 1]))

    @property
    def force_rmse(self) -> float:
        """kJ/mol/nm."""
        return float(torch.sqrt(self.sums[0] / self.sums[1]))

    @property
    def energy_rmse(self) -> float | None:
        """kJ/mol, or None when no energies were compared."""
        return self._rmse(2)

    @property
    def torsion_rmse(self) -> float | None:
        """kJ/mol/rad, or None when the molecules have no torsions."""
        return self._rmse(4)


def squared_errors(
    batch: ForceBatch, energies: Tensor, forces: Tensor, energy_offsets: Tensor | None = None
) -> Tensor:
    """The sums of :data:`SUM_FIELDS` for one batch, differentiable in the model's outputs.

    Args:
        batch: the reference frames.
        energies: (G,) kJ/mol, the model's.
        forces: (N, 3) kJ/mol/nm, the model's.
        energy_offsets: (G,) kJ/mol subtracted from the energy errors (the training loss' per-molecule
            means, :func:`molecule_mean_errors`), or None.
    """
    force_error = forces - batch.forces
    zero = force_error.new_zeros(())
    sums = [(force_error * force_error).sum(), zero + force_error.numel()]
    if batch.energies is None:
        sums += [zero, zero]
    else:
        energy_error = energies - batch.energies
        if energy_offsets is not None:
            energy_error = energy_error - energy_offsets
        sums += [(energy_error * energy_error).sum(), zero + energy_error.numel()]
    if batch.torsions is None:
        sums += [zero, zero]
    else:
        # τ is linear in the forces: the error of τ is τ of the force error.
        torsion_error = torsional_forces(batch.positions, force_error, batch.torsions).to(force_error.dtype)
        sums += [(torsion_error * torsion_error).sum(), zero + torsion_error.numel()]
    return torch.stack(sums)


def weighted_loss(config: TrainingConfig, sums: Tensor) -> Tensor:
    """w_F·MSE(F) + w_E·MSE(E) + w_τ·MSE(τ) from a vector of :func:`squared_errors` sums."""
    loss = config.force_weight * sums[0] / sums[1]
    if config.uses_energies:
        loss = loss + config.energy_weight * sums[2] / sums[3]
    if config.uses_torsions:
        loss = loss + config.torsion_weight * sums[4] / sums[5].clamp(min=1.0)
    return loss


def molecule_mean_errors(energy_error: Tensor, molecules: Tensor, n_molecules: int) -> Tensor:
    """Per frame, the mean energy error (kJ/mol) of its molecule's frames in the global batch.

    The training loss compares energies relative to this mean: a constant per molecule is the
    per-type energies' job (fitted in closed form), and chasing it by gradient steps would swamp
    the optimiser with the drift of the mean energy under force training. The mean needs no
    gradient: Σ(ΔE_i − mean) = 0 makes the gradient of the centred loss the same with it held
    fixed. It is summed over all ranks, so that DDP gives the one-process gradients.
    """
    sums = energy_error.new_zeros(2, n_molecules, dtype=torch.float64)
    sums[0].index_add_(0, molecules, energy_error.double())
    sums[1].index_add_(0, molecules, torch.ones_like(sums[1][molecules]))
    sums = all_reduce_sum(sums)
    return (sums[0] / sums[1].clamp(min=1.0)).to(energy_error.dtype)[molecules]
