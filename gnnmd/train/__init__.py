"""Training: delta-force matching of the network on top of Boltzmann-inverted priors."""

from gnnmd.train.loop import Trainer, TrainingConfig

__all__ = ["Trainer", "TrainingConfig"]
