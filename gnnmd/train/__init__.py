"""Training: delta-force matching of the network on top of Boltzmann-inverted priors (+ energies)."""

from gnnmd.train.loop import ErrorSums, Trainer, TrainingConfig

__all__ = ["ErrorSums", "Trainer", "TrainingConfig"]
