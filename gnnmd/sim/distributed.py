"""Sharding replicas over processes started by ``torchrun`` (torch.distributed).

``torchrun --nproc-per-node N gnnmd simulate ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. Rank r
simulates the global replicas r, r + N, r + 2N, ... (strided, so that a run of
several proteins packed system by system spreads every protein over the
ranks), writes their files itself, and sends its throughput to rank 0 at the
end. The process group uses gloo on CPUs and NCCL on GPUs; a plain
``gnnmd simulate`` is world size 1 and starts no process group.

Results do not depend on the sharding: each replica's noise is keyed by its
global index (:mod:`gnnmd.sim.noise`).
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


def initialize(info: RankInfo, device_type: str) -> str | None:
    """Start the process group (NCCL for CUDA, else gloo) in a world larger than 1; returns the backend."""
    if not info.distributed:
        return None
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)  # NCCL's object collectives use the current device
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return backend


def device_for(device: str, info: RankInfo) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` when ``device`` is "cuda" in a sharded run."""
    if device == "cuda" and info.distributed:
        if info.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {info.local_rank} has no GPU: torch sees {torch.cuda.device_count()} here"
            )
        return f"cuda:{info.local_rank}"
    return device


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


def finalize() -> None:
    """Tear the process group down if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()


def on_root(info: RankInfo, action: Callable[[], Any]) -> Any:
    """Run ``action()`` on rank 0 only; every rank gets its result, or raises its error.

    What only one process may do (take a folder's lock, write a run record) runs on rank 0,
    and a refusal there stops every rank with the same error instead of leaving them waiting.
    """
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
