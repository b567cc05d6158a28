"""A bead-wise perceptron (Linear, activation, Linear) as plain values: what kernels read of it.

SchNet applies one after every continuous-filter convolution (``f2out``, activation,
``dense``, plus the residual) and one as its readout. :func:`mlp_record` reads the
layers off the network once; kernels (:mod:`gnnmd.kernels`) build their own
arithmetic from the record and never reach into the network's classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from gnnmd.nn.filter_record import activation_name, layer_bias


@dataclass(frozen=True)
class MLPRecord:
    """out = second(act(first(x))): (weight (B, A), bias (B,)), activation name, (weight (C, B), bias (C,)).

    Tensors are detached copies; ``activation`` is one of :data:`gnnmd.nn.schnet.ACTIVATIONS`.
    """

    first: tuple[Tensor, Tensor]
    activation: str
    second: tuple[Tensor, Tensor]


def mlp_record(first: nn.Linear, act: nn.Module, second: nn.Linear) -> MLPRecord:
    """The record of ``second(act(first(x)))``."""
    return MLPRecord(_layer(first), activation_name(act), _layer(second))


def _layer(layer: nn.Linear) -> tuple[Tensor, Tensor]:
    return layer.weight.detach().clone(), layer_bias(layer).detach().clone()
