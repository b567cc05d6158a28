"""Running a model on a kernel backend: convert it, and say what computes its interactions.

The kernels (:mod:`gnnmd.kernels`) build each block's kernel from the block's plain filter
record; this module is the model's side of that contract: it reads the records, puts the
kernels into a copy of the model and reports the implementation that runs
(``torch``, ``torch-chunked``, ``native-cpu``, ``triton-cuda``; `` (fallback)`` where a fast
path was allowed to fall back). See :mod:`gnnmd.kernels` for the backends.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from gnnmd.kernels import TABULATED, fallback_reason, kernel_for, resolve_backend
from gnnmd.kernels.tabulated_network import NativeTabulatedNetwork
from gnnmd.nn.filter_record import network_record
from gnnmd.nn.potential import CGPotential


def backend_of(model: CGPotential) -> str:
    """The backend ``model`` runs with."""
    return model.network.backend


def implementation_of(model: CGPotential, device: Any = "cpu") -> str:
    """What computes ``model``'s interactions on ``device``: ``torch``, ``torch-chunked``,
    ``native-cpu`` or ``triton-cuda`` (with `` (fallback)`` where a fast path was allowed to fall back)."""
    backend = backend_of(model)
    if backend == "reference":
        return "torch"
    cuda = torch.device(device).type == "cuda"
    if cuda:
        from gnnmd.kernels import triton_kernels  # imports Triton: only where CUDA is asked for

        dtype = next(model.parameters()).dtype
        if triton_kernels.available() and (backend not in TABULATED or dtype == torch.float32):
            return "triton-cuda"
        return "torch"
    if backend in TABULATED:
        implementation = model.network.convolutions()[0].kernel.implementation
        return implementation + (" (fallback)" if getattr(model.network, "fallback", None) else "")
    return "torch-chunked"


def use_backend(
    model: CGPotential, backend: str, allow_fallback: bool = False, **options: Any
) -> CGPotential:
    """A copy of ``model`` whose interaction blocks run on ``backend``.

    Options: ``tolerance`` or ``points`` (tabulated grid, see
    :func:`gnnmd.kernels.tabulated.tabulate_block`), ``weight_dtype`` (fused16:
    torch.bfloat16 or torch.float16). The original model is untouched.

    Raises:
        OpsUnavailableError: ``tabulated`` without its op library, unless ``allow_fallback``
            (then the pure-torch twin runs; ``network.fallback`` holds the reason).
    """
    resolve_backend(backend)
    if backend_of(model) != "reference":
        raise ValueError(f"convert from a reference model; this one already runs {backend_of(model)!r}")
    problem = fallback_reason(allow_fallback) if backend in TABULATED else None
    native = problem is None
    converted = copy.deepcopy(model)
    network = converted.network
    network.backend = backend
    network.fallback = problem
    if backend == "reference":
        return converted
    for block, record in zip(network.convolutions(), network.filter_records(), strict=True):
        block.uses_basis = False
        block.kernel = kernel_for(backend, record, dtype_of(network), {**options, "native": native})
    if backend == "fused16":
        from gnnmd.kernels.quantize import quantize_linear_layers

        quantize_linear_layers(network, options.get("weight_dtype"))
    if backend in TABULATED and native:
        # The native path also computes pair distances and priors through registered ops (CPU).
        from gnnmd.kernels.native_geometry import NativePairDistances, NativePriorTerms

        converted.pair_distance_kernel = NativePairDistances()
        converted.priors.kernel = NativePriorTerms()
        network.network_kernel = network_kernel(network)
    converted.requires_grad_(False)
    return converted


def network_kernel(network: torch.nn.Module) -> NativeTabulatedNetwork | None:
    """The blocks and readout of a natively tabulated ``network`` as one registered op, or None where
    the op does not cover its shape (several activations): its blocks then run one by one, on the
    same native convolution op."""
    try:
        return NativeTabulatedNetwork(network_record(network))
    except ValueError:
        return None


def dtype_of(network: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``network``'s parameters."""
    return next(network.parameters()).dtype
