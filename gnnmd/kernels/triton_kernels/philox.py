# ruff: noqa: N803  (Triton compile-time constants are upper case by convention)
"""``gnnmd::philox_bits_triton``: Philox4x32-10 random bits on CUDA in one launch.

The same function as the CPU op ``gnnmd::philox_bits`` and its pure-torch twin
(:mod:`gnnmd.kernels.philox`): counter (step mod 2³², step div 2³², lanes[m, 0], lanes[m, 1]),
key (key_lo, key_hi), the first two output words per element, (M, 2) int64. The step is read
from a 0-d int64 device tensor, so a captured CUDA graph replays it as it advances; the ten
round keys and the two multipliers come in as an int64 tensor (no 64-bit literals in the kernel;
:func:`gnnmd.kernels.philox.philox_constants` makes it).
The twin's 16-bit-limb arithmetic is some 260 elementwise launches per draw on a GPU; this is one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnmd.kernels.triton_kernels.common import triton

#: Elements per program.
BLOCK_M = 256

if triton is not None:
    import triton.language as tl
    from torch.library import triton_op

    from gnnmd.kernels.triton_kernels.common import launch

    @triton.jit
    def _philox_bits(lanes, step, constants, out, count, BLOCK: tl.constexpr):
        m = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = m < count
        s = tl.load(step)
        zero = tl.zeros([BLOCK], dtype=tl.uint32)
        c0 = zero + (s & 0xFFFFFFFF).to(tl.uint32)
        c1 = zero + ((s >> 32) & 0xFFFFFFFF).to(tl.uint32)
        c2 = tl.load(lanes + 2 * m, mask=mask, other=0).to(tl.uint32)
        c3 = tl.load(lanes + 2 * m + 1, mask=mask, other=0).to(tl.uint32)
        multiplier0 = tl.load(constants).to(tl.uint32)
        multiplier1 = tl.load(constants + 1).to(tl.uint32)
        for r in tl.static_range(10):
            k0 = tl.load(constants + 2 + 2 * r).to(tl.uint32)
            k1 = tl.load(constants + 3 + 2 * r).to(tl.uint32)
            hi0 = tl.umulhi(c0, multiplier0)
            lo0 = c0 * multiplier0
            hi1 = tl.umulhi(c2, multiplier1)
            lo1 = c2 * multiplier1
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        tl.store(out + 2 * m, c0.to(tl.int64), mask=mask)
        tl.store(out + 2 * m + 1, c1.to(tl.int64), mask=mask)

    @triton_op("gnnmd::philox_bits_triton", mutates_args=())
    def philox_bits_triton(lanes: Tensor, step: Tensor, constants: Tensor) -> Tensor:
        out = torch.empty((lanes.shape[0], 2), dtype=torch.int64, device=lanes.device)
        count = lanes.shape[0]
        if count == 0:
            return out
        grid = (triton.cdiv(count, BLOCK_M),)
        launch(_philox_bits)[grid](lanes, step, constants, out, count, BLOCK=BLOCK_M)
        return out


def philox_bits(lanes: Tensor, step: Tensor, constants: Tensor) -> Tensor:
    """(M, 2) int64 Philox bits of int64 ``lanes`` (M, 2) at the 0-d int64 ``step`` (same device)."""
    return philox_bits_triton(lanes.contiguous(), step.reshape(()).to(torch.int64), constants)
