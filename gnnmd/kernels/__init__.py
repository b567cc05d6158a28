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
``tabulated16`` ``tabulated`` with the spline tables in float16 (float32 arithmetic):
                half the bytes a pair reads, the coefficients' rounding added to the
                spline's error (docs/kernels.md)
==============  =====================================================================

This package resolves a backend name and builds each block's kernel from its filter record
(:func:`kernel_for`); it never imports the network's classes. Converting a model is the
model's business: :func:`gnnmd.nn.backends.use_backend` returns a converted copy whose
weights are frozen (the fast backends compute forces, not weight gradients).

No silent fallback: a requested backend resolves to a named implementation
(:func:`gnnmd.nn.backends.implementation_of`: ``native-cpu``, ``triton-cuda``, ``torch-chunked``,
``torch``), recorded in bench rows, run records and exported files. Where the
``tabulated`` backend's op library is missing, ``use_backend`` raises unless
``allow_fallback=True`` (``--allow-fallback``), which runs the pure-torch twin,
says so once on stderr and records it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gnnmd.kernels.filter_spec import FilterRecord

BACKENDS = ("reference", "fused", "fused16", "tabulated", "tabulated16")
#: The backends whose filters are spline tables.
TABULATED = ("tabulated", "tabulated16")
#: The request for the fastest accurate backend that runs here (see :func:`choose_backend`).
AUTO = "auto"


def resolve_backend(name: str) -> str:
    """Validate a backend name; an unknown backend raises ValueError."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return name


_CHOICES_SAID: set[str] = set()
_FALLBACKS_SAID: set[str] = set()


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


def kernel_for(backend: str, record: FilterRecord, dtype: Any, options: dict):
    """The kernel module of one block on ``backend``, from the block's filter record (plain values).

    ``options``: ``native`` (tabulated: the registered op, else its pure-torch twin), ``tolerance``
    or ``points`` (tabulated grid), ``weight_dtype`` (fused16).
    """
    if backend in TABULATED:
        from gnnmd.kernels.tabulated import NativeTabulatedKernel, TabulatedKernel, half_table, tabulate_block

        kwargs = {key: options[key] for key in ("tolerance", "points") if key in options}
        coefficients, report = tabulate_block(record, **kwargs)
        table = half_table(coefficients, report) if backend == "tabulated16" else coefficients.to(dtype)
        kernel = NativeTabulatedKernel if options["native"] else TabulatedKernel
        return kernel(table, record.cutoff_nm, report)
    from gnnmd.kernels.fused import FusedKernel

    weight_dtype = options.get("weight_dtype") if backend == "fused16" else None
    return FusedKernel(record, weight_dtype=weight_dtype).to(dtype)


def fallback_reason(allow_fallback: bool) -> str | None:
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
