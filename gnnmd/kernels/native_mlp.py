"""Bead-wise perceptrons through the registered C++ op ``gnnmd::node_mlp`` (the tabulated backend on CPU).

An interaction block's update x + dense(act(f2out(m))) and the two-layer readout run as
one op each, forward and backward, instead of a dozen torch ops with their autograd
nodes and full passes over the (N, F) features (``csrc/node_mlp.cpp``). The pure-torch
twin is the network's own layers, which training and the other backends run; on CUDA
tensors this module computes the same twin from its own copies of the weights.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from gnnmd.nn.mlp_record import MLPRecord


class NativeNodeMLP(nn.Module):
    """act(x W1ᵀ + b1) W2ᵀ + b2 (+ residual) from an :class:`~gnnmd.nn.mlp_record.MLPRecord`.

    The weights are fixed copies (non-persistent buffers: a converted model's checkpoint keeps
    the network's own layers; TorchScript keeps these).
    """

    def __init__(self, record: MLPRecord) -> None:
        super().__init__()
        (w1, b1), (w2, b2) = record.first, record.second
        for name, value in (("weight1", w1), ("bias1", b1), ("weight2", w2), ("bias2", b2)):
            self.register_buffer(name, value.detach().clone().contiguous(), persistent=False)
        self.activation = record.activation

    def forward(self, x: Tensor, residual: Optional[Tensor]) -> Tensor:
        """(N, C) from (N, A) inputs and an optional (N, C) residual."""
        if not torch.jit.is_scripting() and x.is_cuda:
            return self._twin(x, residual)
        return torch.ops.gnnmd.node_mlp(
            x, self.weight1, self.bias1, self.weight2, self.bias2, residual, self.activation
        )

    @torch.jit.unused
    def _twin(self, x: Tensor, residual: Optional[Tensor]) -> Tensor:
        hidden = nn.functional.linear(x, self.weight1, self.bias1)
        out = nn.functional.linear(_activate(self.activation, hidden), self.weight2, self.bias2)
        return out if residual is None else residual + out


def _activate(name: str, x: Tensor) -> Tensor:
    functional = nn.functional
    if name == "ssp":
        return functional.softplus(x) - math.log(2.0)
    named = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "silu": functional.silu, "mish": functional.mish}
    return named[name](x)
