"""Which frames train and which are held out: random frames, or whole trajectories when recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gnnmd.train.loop import TrainingConfig


def split_frames(
    count: int, config: TrainingConfig, groups: np.ndarray | None = None, biased: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) global frame indices, a deterministic split by ``config.seed``.

    With ``groups`` ((count,) ids of independent trajectories) whole trajectories are held out:
    frames of one trajectory are correlated, and held-out frames beside training frames would
    measure memory, not generalisation. Frames ``biased`` ((count,) bool: of trajectories run with
    a bias) are always trained on and never held out: held-out frames must be Boltzmann samples.
    """
    if groups is not None:
        return _split_groups(groups, config, np.zeros(count, bool) if biased is None else biased)
    if biased is not None and biased.any():
        raise ValueError("biased frames need their trajectories recorded, to keep them out of validation")
    order = np.random.default_rng(config.seed).permutation(count)
    if config.max_frames is not None:
        order = order[: config.max_frames]
    held_out = max(1, int(round(config.validation_fraction * len(order))))
    if held_out >= len(order):
        raise ValueError(f"{len(order)} frames are too few to hold out {held_out} for validation")
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def _split_groups(
    groups: np.ndarray, config: TrainingConfig, biased: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if config.max_frames is not None:
        raise ValueError("--max-frames picks random frames; with trajectories recorded, hold out whole ones")
    labels = np.random.default_rng(config.seed).permutation(np.unique(groups[~biased]))
    held_out = max(1, int(round(config.validation_fraction * len(labels))))
    if held_out >= len(labels):
        raise ValueError(
            f"{len(labels)} unbiased trajectories are too few to hold out {held_out} for validation"
        )
    validation = np.isin(groups, labels[:held_out]) & ~biased
    return np.flatnonzero(~validation), np.flatnonzero(validation)


def trajectory_groups(dataset) -> np.ndarray | None:
    """(frames,) one id per (molecule, trajectory) over the whole dataset, or None unless every
    molecule records its frames' trajectories."""
    ids = dataset.trajectory_ids
    if not ids or any(i is None for i in ids):
        return None
    return np.concatenate([molecule * (1 << 31) + i.astype(np.int64) for molecule, i in enumerate(ids)])


def biased_frames(dataset) -> np.ndarray:
    """(frames,) bool over the whole dataset: frames of trajectories run with a bias."""
    return np.concatenate([dataset.biased_frames(m) for m in range(len(dataset.topologies))])
