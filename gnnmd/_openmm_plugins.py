"""Repair of the openmm-torch import-order trap.

OpenMM loads its plugins when ``openmm`` is first imported. openmm-torch's
platform plugin (``libOpenMMTorchReference.so``, ``...CUDA.so``) links against
libraries that only become findable once ``torch`` has been imported; if
``openmm`` comes first, the plugin fails to load *silently*, and any Context
with a TorchForce later fails with "Specified a Platform for a Context which
does not support all required kernels". gnnmd imports torch first, and if
``openmm`` was already imported, loads the Torch plugins that failed. This is
the one global side effect of importing gnnmd.
"""

from __future__ import annotations

import os
import sys

_reloaded: set[str] = set()
_PREFIX = "Error loading library "


def _failed_torch_plugins() -> list[str]:
    import openmm

    paths = []
    for failure in openmm.Platform.getPluginLoadFailures():
        if not failure.startswith(_PREFIX):
            continue
        path = failure[len(_PREFIX) :].split(": ", 1)[0]
        name = os.path.basename(path)
        # OpenCL plugins fail for lack of libOpenCL, not because of the import order.
        if name.startswith("libOpenMMTorch") and "OpenCL" not in name:
            paths.append(path)
    return paths


def repair_torch_plugins() -> list[str]:
    """Load openmm-torch plugins that failed because openmm was imported before torch.

    Does nothing when openmm has not been imported. Returns the plugin paths
    loaded now. Call only after ``import torch``.
    """
    if "openmm" not in sys.modules:
        return []
    import openmm

    loaded = []
    for path in _failed_torch_plugins():
        if path in _reloaded:
            continue
        try:
            openmm.Platform.loadPluginLibrary(path)
        except Exception:  # noqa: BLE001 - still missing: gnnmd.openmm reports it on use
            continue
        _reloaded.add(path)
        loaded.append(path)
    return loaded
