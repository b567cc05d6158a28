"""torchrun support: one code path for 1 process, several GPUs, or several nodes.

Launched by ``torchrun`` (which sets RANK, WORLD_SIZE, MASTER_ADDR...), gnnmd
joins the process group with gloo on CPU or NCCL on GPUs; launched plainly it
runs as rank 0 of 1. No home-made process management.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_environment(device: torch.device) -> tuple[int, int]:
    """Join the torchrun process group if there is one; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all ranks (identity on one process)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
