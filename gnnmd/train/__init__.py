"""Training: delta-force matching of the network on top of Boltzmann-inverted priors (+ energies)."""

from gnnmd.train.config import TrainingConfig
from gnnmd.train.loop import Trainer
from gnnmd.train.losses import ErrorSums

__all__ = ["ErrorSums", "Trainer", "TrainingConfig"]
