"""Kernel backends: every backend computes the same function, chosen by one switch.

==============  =====================================================================
``reference``   plain torch: filter network on the radial basis, ``index_add`` (exact;
                what training and TorchScript export use by default)
``fused``       the exact filter network fused with the message passing: Triton on
                CUDA (no edge tensors, CSR segment sums, no atomics); chunked torch on CPU
``fused16``     ``fused`` with channel-wise 16-bit weights (bfloat16 + per-channel
                float32 scales, float32 accumulation)
``tabulated``   each block's filter W(r) as a cubic Hermite spline (fixed after
                training): the registered C++ op ``gnnmd::tabulated_conv`` on CPU
                (eager and TorchScript), Triton on CUDA
==============  =====================================================================

:func:`use_backend` returns a converted copy of a model; the weights of the copy
are frozen (the fast backends compute forces, not weight gradients).

No silent fallback: a requested backend resolves to a named implementation
(:func:`implementation_of`: ``native-cpu``, ``triton-cuda``, ``torch-chunked``,
``torch``), recorded in bench rows, run records and exported files. Where the
``tabulated`` backend's op library is missing, :func:`use_backend` raises unless
``allow_fallback=True`` (``--allow-fallback``), which runs the pure-torch twin,
says so once on stderr and records it.
"""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gnnmd.nn.potential import CGPotential

BACKENDS = ("reference", "fused", "fused16", "tabulated")
#: The request for the fastest accurate backend that runs here (see :func:`choose_backend`).
AUTO = "auto"


def resolve_backend(name: str) -> str:
    """Validate a backend name; an unknown backend raises ValueError."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return name


_CHOICES_SAID: set[str] = set()


def choose_backend(requested: str, device: Any = "cpu", *, torchscript: bool = False) -> str:
    """The backend a request names: itself, or for ``auto`` the fastest accurate one that runs on
    ``device`` (``cpu``, ``cuda[:k]`` or ``ipu``), said once on stderr with the reason.

    ``auto`` is ``tabulated`` (filters as splines: forces within about 1e-4 of the network's, see
    docs/kernels.md) where its kernel runs: the registered op on CPUs, Triton on CUDA devices in
    eager mode (``torchscript=True``, e.g. OpenMM's CUDA platform, has no CUDA kernel yet); else
    ``reference``. The fast backends give first derivatives only: train with ``reference``.
    """
    if requested != AUTO:
        return resolve_backend(requested)
    kind = str(device).split(":")[0]
    if kind == "cpu":
        from gnnmd.kernels import ops

        try:
            ops.load()
            choice, why = "tabulated", "the native CPU op library is loaded"
        except ops.OpsUnavailableError as error:
            choice, why = "reference", f"the tabulated backend's op library cannot load: {error}"
    elif kind == "cuda" and not torchscript:
        from gnnmd.kernels import triton_kernels

        available = triton_kernels.available()
        choice = "tabulated" if available else "reference"
        why = "Triton runs the tabulated kernels" if available else "Triton is not installed"
    else:
        where = f"{device} in TorchScript" if torchscript else str(device)
        choice, why = "reference", f"no fast kernel runs on {where}"
    message = f"gnnmd: --backend auto runs {choice} ({why})"
    if message not in _CHOICES_SAID:
        _CHOICES_SAID.add(message)
        print(message, file=sys.stderr)
    return choice


def backend_of(model: CGPotential) -> str:
    """The backend ``model`` runs with."""
    return model.network.backend


def implementation_of(model: CGPotential, device: Any = "cpu") -> str:
    """What computes ``model``'s interactions on ``device``: ``torch``, ``torch-chunked``,
    ``native-cpu`` or ``triton-cuda`` (with `` (fallback)`` where a fast path was allowed to fall back)."""
    import torch

    backend = backend_of(model)
    if backend == "reference":
        return "torch"
    cuda = torch.device(device).type == "cuda"
    if cuda:
        from gnnmd.kernels import triton_kernels

        dtype = next(model.parameters()).dtype
        if triton_kernels.available() and (backend != "tabulated" or dtype == torch.float32):
            return "triton-cuda"
        return "torch"
    if backend == "tabulated":
        implementation = model.network.convolutions()[0].kernel.implementation
        return implementation + (" (fallback)" if getattr(model.network, "fallback", None) else "")
    return "torch-chunked"


_FALLBACKS_SAID: set[str] = set()


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
    problem = _fallback_reason(allow_fallback) if backend == "tabulated" else None
    native = problem is None
    converted = copy.deepcopy(model)
    network = converted.network
    network.backend = backend
    network.fallback = problem
    if backend == "reference":
        return converted
    for block, record in zip(network.convolutions(), network.filter_records(), strict=True):
        block.uses_basis = False
        block.kernel = _kernel_for(backend, record, dtype_of(network), {**options, "native": native})
    if backend == "fused16":
        from gnnmd.kernels.quantize import quantize_linear_layers

        quantize_linear_layers(network, options.get("weight_dtype"))
    if backend == "tabulated" and native:
        # The native path also computes pair distances and priors through registered ops (CPU).
        from gnnmd.kernels.native_geometry import NativePairDistances, NativePriorTerms

        converted.pair_distance_kernel = NativePairDistances()
        converted.priors.kernel = NativePriorTerms()
    converted.requires_grad_(False)
    return converted


def dtype_of(network) -> Any:
    return next(network.parameters()).dtype


def _kernel_for(backend: str, record, dtype: Any, options: dict):
    """The kernel module of one block on ``backend``, from the block's filter record (plain values)."""
    if backend == "tabulated":
        from gnnmd.kernels.tabulated import NativeTabulatedKernel, TabulatedKernel, tabulate_block

        kwargs = {key: options[key] for key in ("tolerance", "points") if key in options}
        coefficients, report = tabulate_block(record, **kwargs)
        kernel = NativeTabulatedKernel if options["native"] else TabulatedKernel
        return kernel(coefficients.to(dtype), record.cutoff_nm, report)
    from gnnmd.kernels.fused import FusedKernel

    weight_dtype = options.get("weight_dtype") if backend == "fused16" else None
    return FusedKernel(record, weight_dtype=weight_dtype).to(dtype)


def _fallback_reason(allow_fallback: bool) -> str | None:
    """None where the op library loads; else raise, or (allowed) say so once and return why."""
    from gnnmd.kernels import ops

    try:
        ops.load()
        return None
    except ops.OpsUnavailableError as error:
        problem = str(error)
    if not allow_fallback:
        raise ops.OpsUnavailableError(
            f"the tabulated backend's native kernel cannot run: {problem}. Pass --allow-fallback "
            "(allow_fallback=True) to run its pure-torch twin instead (slower; recorded as a fallback)"
        )
    if problem not in _FALLBACKS_SAID:
        _FALLBACKS_SAID.add(problem)
        print(f"gnnmd: tabulated backend falls back to pure torch: {problem}", file=sys.stderr)
    return problem
