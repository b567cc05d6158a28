"""Optimisation settings of a training run (:class:`TrainingConfig`), checked on construction.

Everything here but ``epochs`` is part of a run's identity: a resume with other settings is
refused (:meth:`gnnmd.train.loop.Trainer.load_state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from gnnmd.config import from_mapping
from gnnmd.train.schedule import SCHEDULES

if TYPE_CHECKING:
    from gnnmd.data.dataset import ForceDataset

SELECTION_CRITERIA = ("force", "free_energy")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings.

    Attributes:
        epochs: maximum number of passes over the training frames.
        batch_size: frames per optimiser step, summed over all ranks.
        learning_rate: AdamW initial learning rate.
        weight_decay: AdamW weight decay.
        lr_decay_factor: learning-rate factor when validation stops improving.
        lr_patience: epochs without improvement before the rate decays.
        lr_schedule: "plateau" (decay by ``lr_decay_factor`` when validation stops improving)
            or "cosine" (a half cosine per step down to ``final_learning_rate`` over ``epochs``;
            :mod:`gnnmd.train.schedule`).
        final_learning_rate: the rate the cosine schedule ends at (unused by "plateau").
        early_stopping_patience: epochs without improvement before training stops.
        validation_fraction: share of frames held out (chosen by ``seed``).
        seed: seeds the split and the frame order.
        max_frames: use at most this many frames (a random subset), or all.
        force_weight: weight of the force MSE, (kJ/mol/nm)², in the loss.
        energy_weight: weight of the per-frame energy MSE, (kJ/mol)², in the loss; above 0
            the dataset must hold energies for every molecule.
        torsion_weight: weight of the MSE of the generalized forces along the bonded graph's
            torsions, (kJ/mol/rad)², in the loss (:mod:`gnnmd.torsions`); above 0 every
            molecule must have a torsion.
        select_by: what picks the best epoch and stops early: "force" (validation loss) or
            "free_energy" (the trainer's held-out free-energy score, computed every epoch).
        selection_replicas: replicas of each free-energy score's simulation.
        selection_steps: steps of each replica, equilibration (a sixth) included.
        weight_average_decay: above 0, validation, selection and ``best.pt`` use an exponential
            moving average of the weights with this decay per step (:mod:`gnnmd.train.averaging`).
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_decay_factor: float = 0.5
    lr_patience: int = 2
    lr_schedule: str = "plateau"
    final_learning_rate: float = 1e-5
    early_stopping_patience: int = 6
    validation_fraction: float = 0.1
    seed: int = 0
    max_frames: int | None = None
    force_weight: float = 1.0
    energy_weight: float = 0.0
    torsion_weight: float = 0.0
    select_by: str = "force"
    selection_replicas: int = 64
    selection_steps: int = 6000
    weight_average_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.final_learning_rate <= self.learning_rate:
            raise ValueError(
                f"final_learning_rate must be in [0, learning_rate = {self.learning_rate}], "
                f"got {self.final_learning_rate}"
            )
        if self.select_by not in SELECTION_CRITERIA:
            raise ValueError(f"select_by must be one of {SELECTION_CRITERIA}, got {self.select_by!r}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise ValueError(f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        if self.selection_replicas < 1 or self.selection_steps < 12:
            raise ValueError(
                f"selection_replicas ({self.selection_replicas}) must be >= 1 and selection_steps "
                f"({self.selection_steps}) >= 12"
            )
        weights = (self.force_weight, self.energy_weight, self.torsion_weight)
        if not (min(weights) >= 0 and sum(weights) > 0):
            raise ValueError(
                f"force_weight {self.force_weight}, energy_weight {self.energy_weight} and torsion_weight "
                f"{self.torsion_weight} must be >= 0, not all zero"
            )

    @property
    def uses_energies(self) -> bool:
        return self.energy_weight > 0

    @property
    def uses_torsions(self) -> bool:
        return self.torsion_weight > 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Build from a mapping; unknown keys raise ValueError."""
        return from_mapping(cls, values, "training config")


def check_dataset(config: TrainingConfig, dataset: ForceDataset) -> None:
    """Raise DatasetError, naming the molecules, where ``dataset`` lacks what ``config``'s loss needs."""
    from gnnmd.data.dataset import DatasetError
    from gnnmd.torsions import molecule_torsions

    molecules = list(zip(dataset.molecules, dataset.topologies, dataset.has_energies, strict=True))
    if config.uses_torsions:
        without = [name for name, topology, _ in molecules if len(molecule_torsions(topology).fixed) == 0]
        if without:
            raise DatasetError(
                f"{dataset.path}: torsion_weight is {config.torsion_weight} but molecule(s) "
                f"{without} have no torsion (a bond that is the centre of a dihedral and in no ring); "
                "train without the torsional term (torsion_weight 0)"
            )
    if config.uses_energies:
        missing = [name for name, _, has in molecules if not has]
        if missing:
            raise DatasetError(
                f"{dataset.path}: energy_weight is {config.energy_weight} but molecule(s) "
                f"{missing} have no 'energies'; train on forces alone (energy_weight 0)"
            )
