"""Kernel backends: every backend computes the same function, chosen by one switch.

==============  =====================================================================
``reference``   plain torch: filter network on the radial basis, ``index_add`` (exact;
                what training and TorchScript export use by default)
``fused``       the exact filter network fused with the message passing: Triton on
                CUDA (no edge tensors, CSR segment sums, no atomics); chunked torch on CPU
``fused16``     ``fused`` with channel-wise 16-bit weights (bfloat16 + per-channel
                float32 scales, float32 accumulation)
``tabulated``   each block's filter W(r) as a cubic Hermite spline (fixed after
                training): fused C kernel on CPU, Triton on CUDA, torch elsewhere
==============  =====================================================================

:func:`use_backend` returns a converted copy of a model; the weights of the copy
are frozen (the fast backends compute forces, not weight gradients).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gnnmd.nn.potential import CGPotential

BACKENDS = ("reference", "fused", "fused16", "tabulated")


def resolve_backend(name: str) -> str:
    """Validate a backend name; an unknown backend raises ValueError."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return name


def backend_of(model: CGPotential) -> str:
    """The backend ``model`` runs with."""
    return model.network.backend


def use_backend(model: CGPotential, backend: str, **options: Any) -> CGPotential:
    """A copy of ``model`` whose interaction blocks run on ``backend``.

    Options: ``tolerance`` or ``points`` (tabulated grid, see
    :func:`gnnmd.kernels.tabulated.tabulate_block`), ``weight_dtype`` (fused16:
    torch.bfloat16 or torch.float16). The original model is untouched.
    """
    resolve_backend(backend)
    if backend_of(model) != "reference":
        raise ValueError(f"convert from a reference model; this one already runs {backend_of(model)!r}")
    converted = copy.deepcopy(model)
    network = converted.network
    network.backend = backend
    if backend == "reference":
        return converted
    for block in network.interactions:
        block.uses_basis = False
        block.kernel = _kernel_for(backend, block, network, options)
    if backend == "fused16":
        from gnnmd.kernels.quantize import quantize_linear_layers

        quantize_linear_layers(network, options.get("weight_dtype"))
    converted.requires_grad_(False)
    return converted


def _kernel_for(backend: str, block, network, options: dict):
    if backend == "tabulated":
        from gnnmd.kernels.tabulated import TabulatedKernel, tabulate_block

        kwargs = {key: options[key] for key in ("tolerance", "points") if key in options}
        coefficients, report = tabulate_block(
            block, network.basis, network.envelope, network.envelope.cutoff_nm, **kwargs
        )
        dtype = next(network.parameters()).dtype
        return TabulatedKernel(coefficients.to(dtype), network.envelope.cutoff_nm, report)
    from gnnmd.kernels.fused import FusedKernel

    weight_dtype = options.get("weight_dtype") if backend == "fused16" else None
    return FusedKernel(block.filter_net, network.basis, network.envelope, weight_dtype=weight_dtype)
