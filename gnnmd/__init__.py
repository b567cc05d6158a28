"""gnnmd: graph-neural-network potentials in real MD engines, fast.

Data flows one way: structure → CG topology (:mod:`gnnmd.topology`,
:mod:`gnnmd.systems`) → model (:mod:`gnnmd.models`, :mod:`gnnmd.nn`) → engine
(:mod:`gnnmd.sim`, :mod:`gnnmd.export` for OpenMM) → reporters.
Units are OpenMM's throughout (nm, kJ/mol, ps, amu, K): see :mod:`gnnmd.units`.
"""

# torch must be imported before openmm: see gnnmd._openmm_plugins.
import torch  # noqa: F401  (import order is the point)

from gnnmd._openmm_plugins import repair_torch_plugins

repair_torch_plugins()

__version__ = "0.1.0"
