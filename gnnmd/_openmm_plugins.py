"""Repair of the openmm-torch import-order trap.

OpenMM loads its plugins when ``openmm`` is first imported. openmm-torch's
platform plugin (``libOpenMMTorchReference.so``, ``...CUDA.so``) links against
libraries that only become findable once ``torch`` has been imported; if
``openmm`` comes first, the plugin fails to load *silently*, and any Context
with a TorchForce later fails with "Specified a Platform for a Context which
does not support all required kernels". Importing gnnmd installs an import hook
that imports torch just before ``openmm`` or ``openmmtorch`` is first imported
(so a script may import gnnmd, then openmm, in any style), and if ``openmm`` was
already imported, imports torch and loads the Torch plugins that failed. These
are the only global side effects of importing gnnmd; torch itself is imported
only when something needs it, so that listings stay fast.
"""

from __future__ import annotations

import importlib.abc
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


class TorchBeforeOpenMM(importlib.abc.MetaPathFinder):
    """A finder that finds nothing: it imports torch when ``openmm``/``openmmtorch`` is first looked
    up, then lets the normal finders import it."""

    NAMES = ("openmm", "openmmtorch")

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib's signature
        if fullname in self.NAMES and "torch" not in sys.modules:
            import torch  # noqa: F401  (import order is the point)
        return None


def torch_before_openmm() -> list[str]:
    """Make torch come before openmm in this process, whichever is imported next.

    Returns the openmm-torch plugins loaded now (openmm was already imported).
    """
    if not any(isinstance(finder, TorchBeforeOpenMM) for finder in sys.meta_path):
        sys.meta_path.insert(0, TorchBeforeOpenMM())
    if "openmm" not in sys.modules:
        return []
    import torch  # noqa: F401  (before the repair, which needs torch's libraries loaded)

    return repair_torch_plugins()
