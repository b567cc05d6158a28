"""Channel-wise 16-bit weights: each output channel scaled to unit max, stored in fp16 or bf16.

W[c, :] ≈ s_c · Q[c, :] with s_c = max |W[c, :]| (float32) and Q in 16 bits,
so every row uses the full 16-bit mantissa whatever its magnitude. Inputs are
rounded to the same 16-bit type and products accumulate in float32, which is
what a tensor-core kernel computes; on CPUs the same arithmetic is emulated in
float32, so the accuracy cost measured on a CPU is the one a GPU pays.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

WEIGHT_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: float16: 10 mantissa bits against bfloat16's 7; with every row scaled to unit max and bounded
#: activations (basis in [0, 1], tanh), range is not what limits accuracy here.
DEFAULT_WEIGHT_DTYPE = torch.float16


class QuantizedLinear(nn.Module):
    """A frozen ``nn.Linear`` with channel-wise 16-bit weights (units as the layer it replaces)."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = DEFAULT_WEIGHT_DTYPE) -> None:
        super().__init__()
        if dtype not in WEIGHT_DTYPES.values():
            raise ValueError(f"16-bit weight dtype must be one of {list(WEIGHT_DTYPES)}, got {dtype}")
        weight = linear.weight.detach().to(torch.float64)
        scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
        # Stored as int16 bit patterns so that model.to(dtype) never widens them.
        quantized = (weight / scale[:, None]).to(dtype)
        self.register_buffer("bits", quantized.view(torch.int16).contiguous())
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        bias = linear.bias.detach().clone() if linear.bias is not None else torch.zeros(weight.shape[0])
        self.register_buffer("bias", bias.to(linear.weight.dtype))
        self.is_bfloat16 = dtype == torch.bfloat16
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def weight16(self) -> Tensor:
        """(out, in) the 16-bit weights Q (without scales)."""
        return self.bits.view(torch.bfloat16) if self.is_bfloat16 else self.bits.view(torch.float16)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight16()
        # Straight-through rounding: the gradient is not rounded (as in the Triton backward kernel).
        rounded = x + (x.to(weight.dtype).to(x.dtype) - x).detach()
        return (rounded @ weight.to(x.dtype).t()) * self.scale.to(x.dtype) + self.bias.to(x.dtype)


def quantize(module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` (in place) by a :class:`QuantizedLinear`."""
    dtype = dtype or DEFAULT_WEIGHT_DTYPE
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, QuantizedLinear(child, dtype))
        else:
            quantize(child, dtype)
    return module


def quantize_linear_layers(network: nn.Module, dtype: torch.dtype | None = None) -> None:
    """Quantize the node-level networks of a SchNet (in2f, f2out, dense, readout) in place.

    The filter networks are quantized inside their kernels (:class:`gnnmd.kernels.fused.FusedKernel`);
    the embedding stays exact (a lookup, not a product).
    """
    for block in network.interactions:
        for name in ("in2f", "f2out", "dense"):
            setattr(block, name, QuantizedLinear(getattr(block, name), dtype or DEFAULT_WEIGHT_DTYPE))
    quantize(network.readout, dtype)
