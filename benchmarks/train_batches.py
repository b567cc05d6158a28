"""Training-step time per frame: frames read from memory vs from the HDF5 file, side by side.

    python benchmarks/train_batches.py DATA.h5 [--model-config scripts/ala2_cg_config.json]
        [--batch-sizes 128,1024,4096] [--steps 5] [--threads 1]

For each batch size, both loaders (gnnmd.train.batches.BatchLoader with its default memory
budget, and with none: every batch read from the file) run the same ``--steps`` optimiser
steps after one warm-up step, alternating, on the same random frames. Prints µs per frame
for each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gnnmd.cli.train import potential_config
from gnnmd.data.dataset import ForceDataset
from gnnmd.train.batches import BatchLoader
from gnnmd.train.loop import Trainer, TrainingConfig
from gnnmd.train.setup import model_for_dataset


def seconds_per_frame(trainer: Trainer, loader: BatchLoader, batches: list) -> float:
    """Mean seconds per frame of optimiser steps on ``batches`` (the first is a warm-up)."""
    started, frames = 0.0, 0
    for index, indices in enumerate(batches):
        if index == 1:
            started, frames = time.perf_counter(), 0
        errors = trainer.errors(loader(indices, trainer.dtype))
        trainer.optimizer.zero_grad()
        trainer.loss(errors).backward()
        trainer.optimizer.step()
        frames += len(indices)
    return (time.perf_counter() - started) / frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model-config", default="scripts/ala2_cg_config.json")
    parser.add_argument("--batch-sizes", default="128,1024,4096")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = ForceDataset(args.data)
    rows = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        model = model_for_dataset(dataset, potential_config(args.model_config), 300.0, seed=0)
        trainer = Trainer(model, dataset, TrainingConfig(batch_size=size), Path("/nonexistent"))
        batches = trainer.global_batches(0)[: args.steps + 1]
        from_file = seconds_per_frame(
            trainer, BatchLoader(dataset, model, trainer.device, memory_bytes=0), batches
        )
        in_memory = seconds_per_frame(trainer, trainer.loader, batches)
        rows.append({
            "batch_size": size, "file_us_per_frame": 1e6 * from_file, "memory_us_per_frame": 1e6 * in_memory,
            "speed-up": from_file / in_memory,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
