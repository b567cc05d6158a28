"""torchrun support, one set-up for every command: 1 process, several GPUs, or several nodes.

``torchrun --nproc-per-node N gnnmd simulate|train|data qm ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; :func:`initialize` joins
the process group (gloo on CPUs, NCCL on GPUs). A plain launch is rank 0 of 1 and starts
no process group. No home-made process management.

- ``gnnmd simulate``: rank r simulates the global replicas r, r + N, ... (:func:`shard`;
  strided, so that several proteins packed system by system spread over the ranks). Results
  do not depend on the sharding: each replica's noise is keyed by its global index.
- ``gnnmd train``: data-parallel; gradients and error sums meet in :func:`all_reduce_sum`.
- ``gnnmd data qm``: each rank labels its own frames; rank 0 merges.

What only one process may do (take a folder's lock, write a record) runs in :func:`on_root`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class RankInfo:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def rank_from_environment() -> RankInfo:
    """The rank, world size and local rank set by torchrun (0, 1, 0 when absent)."""
    info = RankInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ValueError(f"RANK={info.rank} is not within WORLD_SIZE={info.world_size}")
    return info


def local_device(device: str | torch.device, info: RankInfo | None = None) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a bare "cuda" under torchrun, else ``device`` itself."""
    device = torch.device(device)
    info = info if info is not None else rank_from_environment()
    if device.type != "cuda" or device.index is not None or not info.distributed:
        return device
    if info.local_rank >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"LOCAL_RANK {info.local_rank} has no GPU: torch sees {count} here")
    return torch.device(f"cuda:{info.local_rank}")


def initialize(device: str | torch.device, info: RankInfo | None = None) -> RankInfo:
    """Join torchrun's process group when the world is larger than 1; returns this process's place.

    On GPUs each rank first makes its own ``cuda:LOCAL_RANK`` the current device: NCCL refuses
    two ranks on one GPU, and its object collectives use the current device.
    """
    info = info if info is not None else rank_from_environment()
    if info.distributed and not dist.is_initialized():
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(local_device(device, info))
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def joined_world() -> tuple[int, int]:
    """(rank, world size) of the process group this process has joined; (0, 1) outside torchrun.

    Starts nothing: under torchrun (WORLD_SIZE > 1) the caller joins first with
    :func:`initialize` (the CLI commands do); a process that has not is refused rather than
    left to work alone.
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = rank_from_environment().world_size
    if world > 1:
        raise RuntimeError(
            f"launched as one of {world} processes (WORLD_SIZE={world}) but the process group is not "
            "started: call gnnmd.distributed.initialize(device) first (the gnnmd commands do)"
        )
    return 0, 1


def finalize() -> None:
    """Tear the process group down if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(total: int, info: RankInfo) -> list[int]:
    """Global replica indices of this rank: rank, rank + world_size, ... below ``total``."""
    if total < info.world_size:
        raise ValueError(f"{total} replicas cannot be shared by {info.world_size} ranks; use fewer ranks")
    return list(range(info.rank, total, info.world_size))


def gather_to_root(value: Any, info: RankInfo) -> list[Any] | None:
    """Every rank's ``value`` (picklable), in rank order, on rank 0; None on the other ranks."""
    if not info.distributed:
        return [value]
    gathered: list[Any] | None = [None] * info.world_size if info.is_root else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_root(value: Any, info: RankInfo) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_root(action: Callable[[], Any], info: RankInfo | None = None) -> Any:
    """Run ``action()`` on rank 0 only; every rank gets its result, or raises its error.

    A refusal on rank 0 (a locked folder, a changed run) stops every rank with the same
    error instead of leaving them waiting in the next collective.
    """
    info = info if info is not None else rank_from_environment()
    outcome: tuple = ("ok", None)
    if info.is_root:
        try:
            outcome = ("ok", action())
        except Exception as error:  # handed to every rank, raised everywhere
            outcome = ("error", error)
    outcome = broadcast_from_root(outcome, info)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all ranks (identity on one process)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    """Wait for every rank (nothing to wait for on one process)."""
    if dist.is_initialized():
        dist.barrier()
