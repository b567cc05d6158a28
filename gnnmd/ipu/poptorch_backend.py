"""Graphcore IPUs through PopTorch: the static-shape model in ``poptorch.inferenceModel``.

PopTorch ships with Graphcore's Poplar SDK and is not on PyPI. Without it,
:func:`require_poptorch` raises :class:`IPUUnavailableError` naming what is
missing and how to get it; ``gnnmd bench/simulate --device ipu`` call it first.
This module is written against PopTorch's documented API (``poptorch.Options``,
``deviceIterations``, ``replicationFactor``, ``enableExecutableCaching``,
``inferenceModel``, ``detachFromDevice``) and has not run on an IPU: see docs/ipu.md.

:class:`IPUForces` is a force provider (:mod:`gnnmd.engine.forces`) for the replica
runner: its forces come from a static model, on an IPU (``executor="ipu"``) or on the
host (``"host"``, how it is tested). The integrator stays on the host, in float32 for
the IPU. Units: nm, kJ/mol, ps.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from gnnmd.errors import IPUUnavailableError
from gnnmd.nn.potential import CGPotential
from gnnmd.static.layout import PackLayout
from gnnmd.static.model import (
    DEFAULT_HEADROOM,
    NeighborCapacityError,
    StaticEvaluator,
    StaticPotential,
    build_static,
)
from gnnmd.topology import CGTopology

#: The message of a missing PopTorch (also in docs/ipu.md and the CLI tests).
POPTORCH_MISSING = (
    "--device ipu needs PopTorch (the 'poptorch' Python package), which ships with Graphcore's Poplar SDK "
    "and is not on PyPI: install the Poplar SDK, run 'source <sdk>/enable', then 'pip install "
    "<sdk>/poptorch-*.whl' into this environment (see docs/ipu.md)"
)
EXECUTORS = ("ipu", "host")


def require_poptorch() -> Any:
    """The ``poptorch`` module, or IPUUnavailableError saying what is missing and how to get it."""
    try:
        import poptorch
    except ImportError as error:
        raise IPUUnavailableError(f"{POPTORCH_MISSING} (import poptorch: {error})") from error
    return poptorch


def ipu_options(device_iterations: int = 1, replication_factor: int = 1, cache_dir: str | None = None) -> Any:
    """``poptorch.Options`` for inference.

    Args:
        device_iterations: model calls per host round trip (inputs stacked on dim 0).
        replication_factor: data-parallel copies over that many IPUs.
        cache_dir: where compiled executables are cached (default: $GNNMD_IPU_CACHE, else none).
    """
    poptorch = require_poptorch()
    options = poptorch.Options()
    options.deviceIterations(device_iterations)
    options.replicationFactor(replication_factor)
    cache_dir = cache_dir or os.environ.get("GNNMD_IPU_CACHE")
    if cache_dir:
        options.enableExecutableCaching(str(cache_dir))
    return options


def ipu_model(model: StaticPotential, options: Any = None) -> Any:
    """``model`` (cast to float32: IPUs have no float64) wrapped by ``poptorch.inferenceModel``.

    Compiled on its first call (shapes are fixed, so once); call ``detachFromDevice()``
    on the result to free the IPU.
    """
    poptorch = require_poptorch()
    return poptorch.inferenceModel(model.float().eval(), options if options is not None else ipu_options())


class StaticForces:
    """A force provider (:mod:`gnnmd.engine.forces`): the static-shape model over packed replicas.

    Packs ``topologies`` on the first call, at the positions of that call, and builds the
    static model (for the IPU, wrapped and compiled by PopTorch). A pack whose pairs outgrow
    its capacity is never truncated: the replicas are packed again at the current positions
    (a recompile on the IPU) and the evaluation redone; ``replans`` counts those.
    """

    def __init__(self, settings: IPUForces, model: CGPotential, topologies: Sequence[CGTopology],
                 device: torch.device) -> None:  # fmt: skip
        self.settings = settings
        self.model = model
        self.topologies = list(topologies)
        self.device = device
        self.replans = 0
        self.layout: PackLayout | None = None
        self._evaluate: StaticEvaluator | None = None
        self._compiled: Any = None

    def _plan(self, positions: Tensor) -> None:
        """Pack the replicas at ``positions`` and build (and for the IPU, wrap) the static model."""
        self.release()
        s = self.settings
        static, self.layout = build_static(self.model, self.topologies, positions.detach().cpu(),
                                           target_nodes=s.target_nodes, headroom=s.headroom,
                                           device=self.device)  # fmt: skip
        module = static
        if s.executor == "ipu":
            module = self._compiled = ipu_model(static, s.options)
        self._evaluate = StaticEvaluator(self.layout, module, static.max_edges, self.model.cutoff_nm)

    def __call__(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Energies (R,) kJ/mol and forces (N, 3) kJ/mol/nm at ``positions`` (N, 3) nm."""
        if self._evaluate is None:
            self._plan(positions)
        try:
            return self._evaluate(positions)
        except NeighborCapacityError as error:
            self.replans += 1
            warnings.warn(f"{error}; packing again at the current positions", stacklevel=2)
            self._plan(positions)
            return self._evaluate(positions)

    def release(self) -> None:
        """Detach from the IPU (if attached)."""
        if self._compiled is not None and hasattr(self._compiled, "detachFromDevice"):
            try:
                self._compiled.detachFromDevice()
            except Exception:  # PopTorch refuses to detach a model that never compiled (never attached)
                pass
        self._compiled = None

    def packing_summary(self) -> dict:
        """The current plan's capacities and efficiencies (see PackingPlan.summary)."""
        return self.layout.plan.summary() if self.layout is not None else {}


@dataclass(frozen=True)
class IPUForces:
    """The force-provider factory of the static-shape path: ``ReplicaRunner(..., forces=IPUForces())``.

    Args:
        executor: "ipu" (PopTorch; the runner's device must be the host CPU, dtype float32)
            or "host" (the static model on the runner's device: how it is tested).
        target_nodes: preferred nodes per pack.
        headroom: factor on each replica's pair count when the capacity is planned.
        options: ``poptorch.Options`` for "ipu" (default: :func:`ipu_options`).
    """

    executor: str = "ipu"
    target_nodes: int = 1024
    headroom: float = DEFAULT_HEADROOM
    options: Any = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.executor == "ipu":
            require_poptorch()

    def __call__(
        self, model: CGPotential, topologies: Sequence[CGTopology], device: torch.device
    ) -> StaticForces:
        if self.executor == "ipu":
            dtype = next(model.parameters()).dtype
            if dtype != torch.float32:
                raise ValueError(f"IPUs have no float64: use dtype float32 with --device ipu (got {dtype})")
            if torch.device(device).type != "cpu":
                raise ValueError(f"with an IPU the integrator runs on the host: use device cpu, not {device}")
        return StaticForces(self, model, topologies, torch.device(device))
