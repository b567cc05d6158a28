"""Counter-based Gaussian noise: every random number is a pure function of its key.

The thermostat noise of bead b, component c of replica r at step t is

    ξ = BoxMuller(U₁, U₂),   U_k = hash(seed, stream, r, 3b + c, k, t)

so it does not depend on which other replicas share the batch, on how the
replicas are sharded over processes, or on anything that happened before step
t. Three properties follow from this design (and are tested):

- replica r's trajectory is the same alone, in a batch of 64, or on rank 1 of a
  ``torchrun`` job, given the same seed and global replica index r;
- the "RNG state" of a run is just ``(seed, step)``: a checkpoint restart draws
  exactly the numbers the uninterrupted run would have drawn;
- a CUDA graph can replay the noise: the step is a device tensor and the hash
  is plain integer tensor arithmetic, with no host-side generator state.

The hash is Chris Wellons' ``lowbias32`` integer mixer, chained over the key
fields. Products are formed from 16-bit limbs so every intermediate stays
below 2⁴⁹ and int64 arithmetic is exact on every device (no reliance on
signed overflow). Uniforms have 32 bits, so |ξ| never exceeds about 6.7:
a truncation of the Gaussian tail at 6.7σ, invisible to a thermostat.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
_MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
#: Stream of the initial Maxwell-Boltzmann velocities.
STREAM_VELOCITIES = 0
#: Stream of the O (Ornstein-Uhlenbeck) step of BAOAB.
STREAM_THERMOSTAT = 1

IntLike = Union[int, Tensor]


def _mul32(x: IntLike, constant: int) -> IntLike:
    """(x * constant) mod 2³² for 0 <= x < 2³², exact in int64 (16-bit limbs)."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * (constant & 0xFFFF)) & 0xFFFF) << 16)) & MASK32


def mix32(x: IntLike) -> IntLike:
    """The lowbias32 bijection of [0, 2³²) onto itself (ints or int64 tensors)."""
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_MULTIPLIERS[0])
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_MULTIPLIERS[1])
    return x ^ (x >> 16)


def _chain(fields: list[IntLike]) -> IntLike:
    h: IntLike = 0x9E3779B9
    for field in fields:
        h = mix32(h ^ field)
    return h


class CounterNoise:
    """Standard normal noise for the beads of a packed batch.

    Args:
        seed: the run's seed, any int in [0, 2⁶⁴).
        replica_of_bead: (N,) int64 global replica index of each bead.
        bead_in_replica: (N,) int64 index of each bead inside its replica.
        dtype: floating dtype of the noise.

    The device is that of ``replica_of_bead``.
    """

    def __init__(
        self, seed: int, replica_of_bead: Tensor, bead_in_replica: Tensor, dtype: torch.dtype
    ) -> None:
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self.seed = int(seed)
        self.dtype = dtype
        element = bead_in_replica.to(torch.int64)[:, None] * 3 + torch.arange(
            3, device=bead_in_replica.device
        )
        replica = replica_of_bead.to(torch.int64)[:, None].expand_as(element)
        self.shape = tuple(element.shape)
        # Per (stream, uniform) the step-independent part of the key, hashed once: (N, 3) int64 each.
        self._keys: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        for stream in (STREAM_VELOCITIES, STREAM_THERMOSTAT):
            for uniform in (0, 1):
                head = [self.seed & MASK32, self.seed >> 32, stream, uniform]
                first = _chain([*head, replica & MASK32, element])
                second = mix32(first ^ 0x5BD1E995)
                self._keys[(stream, uniform)] = (first, second)

    def _uniform_bits(self, stream: int, uniform: int, step: IntLike) -> Tensor:
        first, second = self._keys[(stream, uniform)]
        # Two keyed rounds around the step: equal outputs of different keys are chance, not structure.
        h = mix32(first ^ (step & MASK32))
        return mix32(h ^ second ^ ((step >> 32) & MASK32))

    def normal(self, step: IntLike, stream: int = STREAM_THERMOSTAT) -> Tensor:
        """(N, 3) standard normal numbers for ``step`` (int >= 0, or a 0-d int64 device tensor)."""
        bits_1 = self._uniform_bits(stream, 0, step)
        bits_2 = self._uniform_bits(stream, 1, step)
        scale = 2.0**-32
        u1 = (bits_1.to(self.dtype) + 1.0) * scale  # (0, 1]: the logarithm stays finite
        u2 = bits_2.to(self.dtype) * scale
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
