"""Reading a training state back: safely, and only for the same run.

The state file is read with ``weights_only=True`` (it cannot run code) and records the run's
identity (dataset SHA-256, model configuration, vocabulary, temperature) and its training
config. A resume that differs in anything but the epoch budget is refused, naming the field:
extending a run with more epochs is allowed, training another model into its folder is not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from gnnmd.errors import CheckpointError
from gnnmd.safe_load import load_tensors
from gnnmd.train.config import TrainingConfig

#: What every training state holds.
REQUIRED_FIELDS = ("network", "optimizer", "scheduler", "config", "identity")


def read_state(path: Path, device: torch.device | str, config: TrainingConfig, identity: dict) -> dict:
    """The state at ``path`` if it was written by the run ``config`` + ``identity`` describe.

    Raises:
        CheckpointError: a field is missing (an older gnnmd, or not a training state), or one
            differs from this run's (its name, both values and what to do instead).
    """
    state = load_tensors(path, "training state", device)  # weights_only: runs no code
    missing = [k for k in REQUIRED_FIELDS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: missing field(s) {missing} (written by an older gnnmd or not a training state); "
            "train into a new folder, or pass --fresh to replace it"
        )
    defaults = dataclasses.asdict(TrainingConfig())  # fields added since the state was written
    saved = {k: v for k, v in {**defaults, **state["config"]}.items() if k != "epochs"}
    current = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    for key in sorted(set(saved) | set(identity)):
        old = saved[key] if key in saved else state["identity"].get(key)
        new = current[key] if key in current else identity[key]
        if old != new:
            raise CheckpointError(
                f"{path}: field {key!r} is {old!r} but this run has {new!r}; a resumed run must "
                "train the same model on the same data: use a new output folder (or --fresh)"
            )
    return state
