"""What an engine asks forces of: a force provider over packed replicas.

A runner holds R replicas packed back to back (N beads in all). A provider turns their
positions into per-replica energies and per-bead forces; a factory builds one provider for a
given set of replicas, and is called again whenever that set changes (replicas dropped after
a failure). The replica runner's own provider is the model over a Verlet list; the
static-shape path (:mod:`gnnmd.ipu`) plugs in a fixed-size model, on an IPU or on the host,
without the runner knowing which.

Units: positions nm, energies kJ/mol, forces kJ/mol/nm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from gnnmd.nn.potential import CGPotential
    from gnnmd.topology import CGTopology


@runtime_checkable
class ForceProvider(Protocol):
    """Energies (R,) kJ/mol and forces (N, 3) kJ/mol/nm at ``positions`` (N, 3) nm.

    A provider that holds a device or compiled executable also has ``release()``; the runner
    calls it before a new provider replaces this one.
    """

    def __call__(self, positions: Tensor) -> tuple[Tensor, Tensor]: ...


class ForceProviderFactory(Protocol):
    """Builds the provider of ``topologies`` (one per replica, in packing order) on ``device``.

    ``model`` has already been moved to the runner's device and dtype. Raise ValueError for a
    combination the provider cannot run (a dtype, a device): never run something else.
    """

    def __call__(
        self, model: CGPotential, topologies: Sequence[CGTopology], device: torch.device
    ) -> ForceProvider: ...


def release(provider: ForceProvider | None) -> None:
    """Free what ``provider`` holds (a device, an executable), if it holds anything."""
    free = getattr(provider, "release", None)
    if callable(free):
        free()
