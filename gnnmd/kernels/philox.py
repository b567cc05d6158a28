"""Philox4x32-10 random bits: the registered op ``gnnmd::philox_bits`` and its pure-torch twin.

Philox (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11;
the Random123 library) is a counter-based generator: its output is a bijective function of a
128-bit counter under a 64-bit key, with ten rounds of 32-bit multiplications, and passes
BigCrush. Here an element m's counter is (step mod 2³², step div 2³², lanes[m, 0],
lanes[m, 1]) and the key is the run's seed; the first two of the four output words are
returned, (M, 2) int64 in [0, 2³²).

Three implementations give the same bits: the C++ op (``csrc/philox.cpp``, CPU), the Triton op
``gnnmd::philox_bits_triton`` (CUDA, one launch; :mod:`gnnmd.kernels.triton_kernels.philox`) and
:func:`philox_bits_torch`, plain int64 tensor arithmetic with 16-bit limbs so that every
intermediate stays below 2⁴⁹ (exact on every device, no reliance on wrap-around). A CUDA graph
replays either GPU path with the step held in a device tensor. :class:`PhiloxBits` resolves which
runs and holds what it needs.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10
#: The generator's name, as run records store it.
GENERATOR = "philox4x32-10"
IMPLEMENTATIONS = ("native-cpu", "triton-cuda", "torch")

IntLike = Union[int, Tensor]


def round_keys(key_lo: int, key_hi: int) -> list[tuple[int, int]]:
    """The key of each of the ten rounds: the key, then bumped by the Weyl constants."""
    keys = [(key_lo & MASK32, key_hi & MASK32)]
    for _ in range(ROUNDS - 1):
        k0, k1 = keys[-1]
        keys.append(((k0 + WEYL[0]) & MASK32, (k1 + WEYL[1]) & MASK32))
    return keys


def _mulhilo(multiplier: int, x: IntLike) -> tuple[IntLike, IntLike]:
    """(high, low) 32-bit words of ``multiplier`` * x, 0 <= x < 2³², from 16-bit limbs of x."""
    low_part = (x & 0xFFFF) * multiplier  # < 2^48
    high_part = (x >> 16) * multiplier  # < 2^48; x * m = high_part * 2^16 + low_part
    low = (low_part + ((high_part & 0xFFFF) << 16)) & MASK32
    high = (high_part + (low_part >> 16)) >> 16
    return high, low


def philox_constants(key_lo: int, key_hi: int, device: torch.device) -> Tensor:
    """(22,) int64: the two multipliers, then the ten round keys (k0, k1): the Triton kernel's input."""
    values = [*MULTIPLIERS, *(k for pair in round_keys(key_lo, key_hi) for k in pair)]
    return torch.tensor(values, dtype=torch.int64, device=device)


def philox4x32_10(counter: tuple[IntLike, ...], key_lo: int, key_hi: int) -> tuple[IntLike, ...]:
    """The four output words of Philox4x32-10 (ints, or int64 tensors that broadcast together)."""
    c0, c1, c2, c3 = counter
    for k0, k1 in round_keys(key_lo, key_hi):
        hi0, lo0 = _mulhilo(MULTIPLIERS[0], c0)
        hi1, lo1 = _mulhilo(MULTIPLIERS[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox_bits_torch(lanes: Tensor, step: IntLike, key_lo: int, key_hi: int) -> Tensor:
    """(M, 2) int64: the first two Philox words of counters (step lo, step hi, lanes[:, 0], lanes[:, 1])."""
    counter = (step & MASK32, (step >> 32) & MASK32, lanes[:, 0], lanes[:, 1])
    words = philox4x32_10(counter, key_lo, key_hi)
    return torch.stack(words[:2], dim=1)  # both depend on the lanes: (M,) tensors


def choose_implementation(device: torch.device) -> str:
    """``native-cpu`` on a CPU where the op library loads, ``triton-cuda`` on a CUDA device where
    Triton runs, else ``torch``. All give the same bits (tested), so the choice changes speed only."""
    kind = torch.device(device).type
    if kind == "cpu":
        from gnnmd.kernels import ops

        return "native-cpu" if ops.available() else "torch"
    if kind == "cuda":
        from gnnmd.kernels import triton_kernels

        return "triton-cuda" if triton_kernels.available() else "torch"
    return "torch"


class PhiloxBits:
    """Philox bits under one key on one device: ``bits(lanes, step)`` -> (M, 2) int64.

    Args:
        key_lo, key_hi: the key's words, each in [0, 2³²).
        device: where the lanes live.
        implementation: one of :data:`IMPLEMENTATIONS` (default: :func:`choose_implementation`).
    """

    def __init__(self, key_lo: int, key_hi: int, device: torch.device, implementation: str | None = None):
        if not (0 <= key_lo <= MASK32 and 0 <= key_hi <= MASK32):
            raise ValueError(f"key words must lie in [0, 2**32), got {key_lo} and {key_hi}")
        self.key = (int(key_lo), int(key_hi))
        self.device = torch.device(device)
        self.implementation = implementation or choose_implementation(self.device)
        if self.implementation not in IMPLEMENTATIONS:
            allowed = ", ".join(IMPLEMENTATIONS)
            raise ValueError(f"unknown Philox implementation {self.implementation!r}; allowed: {allowed}")
        self._constants = None
        if self.implementation == "triton-cuda":  # on the device once: nothing to copy while a graph records
            from gnnmd.kernels.triton_kernels.philox import philox_bits as triton_bits

            self._constants = philox_constants(*self.key, self.device)
            self._triton_bits = triton_bits

    def __call__(self, lanes: Tensor, step: IntLike) -> Tensor:
        """(M, 2) int64 bits of counters (step lo, step hi, lanes[:, 0], lanes[:, 1])."""
        if self.implementation == "torch":
            return philox_bits_torch(lanes, step, *self.key)
        if not isinstance(step, Tensor):
            step = torch.tensor(int(step), dtype=torch.int64, device=lanes.device)
        if self.implementation == "native-cpu":
            return torch.ops.gnnmd.philox_bits(lanes, step, *self.key)
        return self._triton_bits(lanes, step, self._constants)


def philox_bits(lanes: Tensor, step: IntLike, key_lo: int, key_hi: int, implementation: str) -> Tensor:
    """(M, 2) int64 Philox bits by ``implementation`` (:data:`IMPLEMENTATIONS`); see :class:`PhiloxBits`."""
    return PhiloxBits(key_lo, key_hi, lanes.device, implementation)(lanes, step)
