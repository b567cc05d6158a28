"""Counter-based Gaussian noise: every random number is a pure function of its key.

The thermostat noise of bead b, component c of replica r at step t is

    ξ = √(-2 ln U₁) cos(2π U₂),   (U₁, U₂) = Philox4x32-10(counter, key = seed)
    counter = (t mod 2³², t div 2³², r, (3b + c) | stream·2³¹)

(:mod:`gnnmd.kernels.philox`), so it does not depend on which other replicas share the
batch, on how the replicas are sharded over processes, or on anything that happened before
step t. Three properties follow from this design (and are tested):

- replica r's trajectory is the same alone, in a batch of 64, or on rank 1 of a
  ``torchrun`` job, given the same seed and global replica index r;
- the "RNG state" of a run is just ``(seed, step)``: a checkpoint restart draws
  exactly the numbers the uninterrupted run would have drawn;
- a CUDA graph can replay the noise: the step is a device tensor and the pure-torch
  Philox is plain integer tensor arithmetic, with no host-side generator state.

Philox is the vetted counter-based generator (Random123; also what cuRAND and JAX use).
Uniforms have 32 bits, so |ξ| never exceeds about 6.7: a truncation of the Gaussian tail at
6.7σ, invisible to a thermostat. On CPUs the bits come from the op ``gnnmd::philox_bits``, on
CUDA devices from its Triton twin, one call per draw either way; elsewhere from the pure-torch
twin; all give the same bits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gnnmd.kernels.philox import GENERATOR, MASK32, IntLike, PhiloxBits

__all__ = ["GENERATOR", "STREAM_THERMOSTAT", "STREAM_VELOCITIES", "CounterNoise", "IntLike"]

#: Stream of the initial Maxwell-Boltzmann velocities.
STREAM_VELOCITIES = 0
#: Stream of the O (Ornstein-Uhlenbeck) step of BAOAB.
STREAM_THERMOSTAT = 1
_STREAM_BIT = 1 << 31


class CounterNoise:
    """Standard normal noise for the beads of a packed batch.

    Args:
        seed: the run's seed, any int in [0, 2⁶⁴) (the Philox key).
        replica_of_bead: (N,) int64 global replica index of each bead, in [0, 2³²).
        bead_in_replica: (N,) int64 index of each bead inside its replica.
        dtype: floating dtype of the noise.
        implementation: "native-cpu", "triton-cuda" or "torch" (default: the fastest that runs on
            the device; all draw the same numbers).

    The device is that of ``replica_of_bead``.
    """

    def __init__(
        self, seed: int, replica_of_bead: Tensor, bead_in_replica: Tensor, dtype: torch.dtype,
        implementation: str | None = None,
    ) -> None:  # fmt: skip
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        if (
            replica_of_bead.numel()
            and not 0 <= int(replica_of_bead.min()) <= int(replica_of_bead.max()) <= MASK32
        ):
            raise ValueError("global replica indices must lie in [0, 2**32)")
        if bead_in_replica.numel() and int(bead_in_replica.max()) >= _STREAM_BIT // 3:
            beads = int(bead_in_replica.max()) + 1
            raise ValueError(f"a replica of {beads} beads is too large for the noise counter")
        self.seed = int(seed)
        self.dtype = dtype
        device = replica_of_bead.device
        self._bits = PhiloxBits(self.seed & MASK32, self.seed >> 32, device, implementation)
        self.implementation = self._bits.implementation
        element = bead_in_replica.to(torch.int64)[:, None] * 3 + torch.arange(3, device=device)
        replica = replica_of_bead.to(torch.int64)[:, None].expand_as(element)
        self.shape = tuple(element.shape)
        flat_replica, flat_element = replica.reshape(-1), element.reshape(-1)
        # Per stream, the step-independent half of every counter: (3N, 2) int64.
        self._lanes = {
            stream: torch.stack([flat_replica, flat_element | (stream * _STREAM_BIT)], dim=1).contiguous()
            for stream in (STREAM_VELOCITIES, STREAM_THERMOSTAT)
        }

    def normal(self, step: IntLike, stream: int = STREAM_THERMOSTAT) -> Tensor:
        """(N, 3) standard normal numbers for ``step`` (int >= 0, or a 0-d int64 device tensor)."""
        bits = self._bits(self._lanes[stream], step)
        scale = 2.0**-32
        u1 = (bits[:, 0].to(self.dtype) + 1.0) * scale  # (0, 1]: the logarithm stays finite
        u2 = bits[:, 1].to(self.dtype) * scale
        normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
        return normal.view(self.shape)
