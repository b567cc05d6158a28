"""The one place where the OpenMM platform and the precision are chosen.

A :class:`PlatformSpec` fixes three things that must agree:

=============  ==================================================================
what           decided by
=============  ==================================================================
OpenMM         ``name``: ``Reference``, ``CPU`` or ``CUDA`` (``auto`` resolves to
platform       CUDA when OpenMM and torch both see a GPU, else Reference)
model dtype    ``precision``: ``double`` runs the model in float64, ``single`` and
               ``mixed`` in float32
torch device   ``cuda`` on the CUDA platform, else ``cpu`` (where the Python-side
               force evaluates the model; TorchForce moves its module itself)
=============  ==================================================================

OpenMM's own arithmetic follows ``precision`` only on CUDA (its ``Precision``
property: ``single``, ``mixed`` or ``double``). The Reference platform always
integrates in double precision and the CPU platform in its fixed mixed scheme;
there ``precision`` decides the model's dtype alone.

Why ``auto`` is Reference without a GPU: in a gnnmd System every force is the model's, so OpenMM
only integrates, and its CPU platform's thread pool costs more per step than Reference's plain
loop at every size measured (one Langevin step around a model returning zeros, on the 2-core
machine: 0.20-0.24 ms on CPU against 0.007 ms on Reference for 49 particles, 0.32-0.34 against
0.14-0.15 ms for 3,136, 2.4-5.3 against 0.85-1.06 ms for 17,216; benchmarks/RESULTS.md).
A platform asked for by name that is not available raises
:class:`~gnnmd.errors.OpenMMSetupError`; nothing falls back silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType

import openmm
import torch

from gnnmd.errors import OpenMMSetupError

#: Platform names accepted everywhere a platform is chosen ("auto" resolves once).
PLATFORMS = ("auto", "Reference", "CPU", "CUDA")
#: OpenMM's precision names.
PRECISIONS = ("single", "mixed", "double")
DEFAULT_PLATFORM = "auto"
DEFAULT_PRECISION = "mixed"
#: The kernel openmm-torch's platform plugins provide for TorchForce.
TORCH_KERNEL = "CalcTorchForce"


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms loaded in this process (e.g. ``["Reference", "CPU"]``)."""
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


@dataclass(frozen=True)
class PlatformSpec:
    """A resolved platform choice (see the module docstring); build it with :func:`resolve_platform`.

    Attributes:
        name: ``"Reference"``, ``"CPU"`` or ``"CUDA"``.
        precision: ``"single"``, ``"mixed"`` or ``"double"``.
    """

    name: str
    precision: str = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        if self.name not in PLATFORMS[1:]:
            raise ValueError(f"platform {self.name!r} is not one of {list(PLATFORMS[1:])}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")

    @property
    def model_dtype(self) -> torch.dtype:
        """torch.float64 for ``double``, else torch.float32."""
        return torch.float64 if self.precision == "double" else torch.float32

    @property
    def torch_device(self) -> torch.device:
        """Where the Python-side force evaluates the model."""
        return torch.device("cuda") if self.name == "CUDA" else torch.device("cpu")

    def platform(self) -> openmm.Platform:
        """The OpenMM Platform object; OpenMMSetupError if it is not loaded here."""
        if self.name not in available_platforms():
            raise OpenMMSetupError(
                f"OpenMM platform {self.name!r} is not available here; available: {available_platforms()}"
            )
        return openmm.Platform.getPlatformByName(self.name)

    def properties(self) -> dict[str, str]:
        """Platform properties for a Context or Simulation (CUDA's ``Precision``; none elsewhere)."""
        return {"Precision": self.precision} if self.name == "CUDA" else {}

    def describe(self) -> str:
        """One short line for logs and tables, e.g. ``"CPU, mixed precision, model float32"``."""
        dtype = str(self.model_dtype).replace("torch.", "")
        return f"{self.name}, {self.precision} precision, model {dtype}"


def resolve_platform(
    platform: str | PlatformSpec = DEFAULT_PLATFORM, precision: str | None = None
) -> PlatformSpec:
    """Resolve a platform name (or pass a PlatformSpec through) and check it is available.

    Args:
        platform: one of :data:`PLATFORMS`, or a PlatformSpec (which carries its own
            precision; a different ``precision`` given with it is an error).
        precision: one of :data:`PRECISIONS`; default :data:`DEFAULT_PRECISION`.

    Raises:
        ValueError: unknown platform or precision name.
        OpenMMSetupError: the platform named is not available in this process.
    """
    spec = _spec_of(platform, precision)
    spec.platform()
    if spec.name == "CUDA" and not torch.cuda.is_available():
        raise OpenMMSetupError("OpenMM's CUDA platform is loaded, but torch sees no CUDA device")
    return spec


def _spec_of(platform: str | PlatformSpec, precision: str | None) -> PlatformSpec:
    if isinstance(platform, PlatformSpec):
        if precision is not None and precision != platform.precision:
            raise ValueError(f"precision {precision!r} contradicts the PlatformSpec's {platform.precision!r}")
        return platform
    precision = precision or DEFAULT_PRECISION
    if platform == "auto":
        gpu = "CUDA" in available_platforms() and torch.cuda.is_available()
        return PlatformSpec("CUDA" if gpu else "Reference", precision)
    if platform in PLATFORMS:
        return PlatformSpec(platform, precision)
    raise ValueError(f"unknown OpenMM platform {platform!r}; allowed: {list(PLATFORMS)}")


class _DropDeprecationNotice(logging.Filter):
    """openmmtorch imports the old ``simtk.openmm`` name, which logs a deprecation line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "simtk.openmm" not in record.getMessage()


def import_openmmtorch() -> ModuleType:
    """Import openmmtorch quietly; OpenMMSetupError with the install line if it is missing."""
    root = logging.getLogger()
    notice_filter = _DropDeprecationNotice()
    # Only while importing: the root logger is left exactly as found.
    root.addFilter(notice_filter)
    try:
        import openmmtorch
    except ImportError as error:
        raise OpenMMSetupError(
            f"the TorchForce route needs openmm-torch, which cannot be imported ({error}); "
            "install it with `pip install openmmtorch==1.5`, or use route='python'"
        ) from error
    finally:
        root.removeFilter(notice_filter)
    return openmmtorch


def check_torch_plugin(spec: PlatformSpec) -> None:
    """Raise OpenMMSetupError unless openmm-torch's kernels are loaded for ``spec``'s platform.

    The usual cause is the import-order trap: ``openmm`` imported before ``torch``
    in a process that never imported gnnmd (which repairs it).
    """
    if spec.platform().supportsKernels([TORCH_KERNEL]):
        return
    failures = [f for f in openmm.Platform.getPluginLoadFailures() if "Torch" in f]
    detail = "; ".join(failures) if failures else "no openmm-torch plugin library was found"
    raise OpenMMSetupError(
        f"OpenMM's {spec.name} platform has no TorchForce kernel (openmm-torch plugin not loaded: "
        f"{detail}). Install openmmtorch==1.5 and import torch (or gnnmd) before openmm."
    )
