"""The compiled op library: where it is, loading it once, and why it is missing when it is.

``torch.ops.gnnmd.*`` exist in a process once the library is loaded, by
:func:`load` (gnnmd does this itself where it needs the ops) or, in a plain
OpenMM or TorchScript script without ``import gnnmd``, by
``torch.ops.load_library(PATH)`` with the path that ``gnnmd ops-library`` prints.
Where a CUDA device and Triton exist, :func:`load` also gives ``gnnmd::tabulated_conv`` and its
backward CUDA kernels (Triton, in Python), so one op name serves both devices in a Python
process; a process without Python (OpenMM's C++ on a CUDA platform) has the CPU kernel only.
The library is built by ``python -m gnnmd.kernels.build`` (``make`` runs it).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from gnnmd.errors import GnnmdError
from gnnmd.kernels import build

#: The registered ops a tabulated model calls, each with a pure-torch twin (see docs/kernels.md).
OPS = ("tabulated_network", "tabulated_conv", "pair_distances", "bonded_priors", "pair_repulsion")


class OpsUnavailableError(GnnmdError, RuntimeError):
    """The compiled op library is missing, stale, or cannot be loaded here."""


def library_path() -> Path:
    """Where the op library is (or would be) installed."""
    return build.LIBRARY_DIR / build.LIBRARY_NAME


@cache
def load() -> Path:
    """Load the op library into this process (once); returns its path.

    Raises:
        OpsUnavailableError: not built, built for another torch or from other sources,
            or the loader refuses it (the message says which, and how to build it).
    """
    path = library_path()
    if not path.is_file():
        raise OpsUnavailableError(
            f"{path}: the gnnmd op library is not built; build it with `python -m gnnmd.kernels.build` "
            "(`make run` and `make test` do)"
        )
    if not build.is_current():
        raise OpsUnavailableError(
            f"{path}: built for another torch version or from older sources (torch here: "
            f"{torch.__version__}); rebuild with `python -m gnnmd.kernels.build`"
        )
    try:
        torch.ops.load_library(str(path))
    except OSError as error:
        raise OpsUnavailableError(f"{path}: cannot be loaded ({error})") from None
    if torch.cuda.is_available():  # the same op names on CUDA devices: the Triton kernels
        from gnnmd.kernels import triton_kernels

        if triton_kernels.available():
            triton_kernels.tabulated.register_cuda_kernels()
    return path


def available() -> bool:
    """Whether the op library loads here (never raises)."""
    try:
        load()
    except OpsUnavailableError:
        return False
    return True
