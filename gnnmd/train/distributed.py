"""torchrun support: one code path for 1 process, several GPUs, or several nodes.

Launched by ``torchrun`` (which sets RANK, WORLD_SIZE, MASTER_ADDR...), gnnmd
joins the process group with gloo on CPU or NCCL on GPUs; launched plainly it
runs as rank 0 of 1. No home-made process management.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist

from gnnmd.sim.distributed import device_for, rank_from_environment
from gnnmd.sim.distributed import on_root as run_on_root


def local_device(device: str | torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for "cuda" under torchrun, else ``device`` itself."""
    device = torch.device(device)
    if device.type != "cuda" or device.index is not None:
        return device
    info = rank_from_environment()
    return torch.device(device_for("cuda", info)) if info.distributed else device


def init_from_environment(device: torch.device) -> tuple[int, int]:
    """Join the torchrun process group if there is one; returns (rank, world size).

    On GPUs each rank first makes its own ``cuda:LOCAL_RANK`` the current device:
    NCCL refuses two ranks on one GPU.
    """
    if rank_from_environment().distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_device(device))
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def joined_world() -> tuple[int, int]:
    """(rank, world size) of the process group this process has joined; (0, 1) outside torchrun.

    Starts nothing: under torchrun (WORLD_SIZE > 1) the caller joins first, with
    :func:`init_from_environment` (``gnnmd train`` does); a process that has not is refused
    rather than left to train alone.
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = rank_from_environment().world_size
    if world > 1:
        raise RuntimeError(
            f"launched as one of {world} processes (WORLD_SIZE={world}) but the process group is not "
            "started: call gnnmd.train.distributed.init_from_environment(device) before building the "
            "Trainer (gnnmd train does)"
        )
    return 0, 1


def on_root(action: Callable[[], Any]) -> Any:
    """Run ``action()`` on rank 0 only; every rank gets its result, or raises its error."""
    return run_on_root(rank_from_environment(), action)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all ranks (identity on one process)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
