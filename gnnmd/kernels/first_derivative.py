"""The fast kernels' backward passes give first derivatives only, and say so when asked for more.

``torch.autograd.function.once_differentiable`` is not enough: it raises only
for the path through the incoming gradient, while the derivatives of its
outputs with respect to the op's own inputs (features, distances) silently come
out as zero. Training forces through a kernel would then get wrong gradients
without a word. :func:`first_derivative_only` refuses a backward pass that
builds a graph (``create_graph=True``, the only way to a second derivative).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch


def first_derivative_only(name: str) -> Callable:
    """Decorate an ``autograd.Function.backward``: run it without a graph, refuse ``create_graph=True``."""

    def decorate(backward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(backward)
        def wrapper(ctx: Any, *grads: Any) -> Any:
            if torch.is_grad_enabled():  # autograd runs backward in grad mode only for create_graph=True
                raise RuntimeError(
                    f"the {name} kernel gives first derivatives only (forces), not the second "
                    "derivatives that create_graph=True asks for (training through forces); "
                    "use the reference backend to train"
                )
            return backward(ctx, *grads)

        return wrapper

    return decorate
