"""gnnmd: graph-neural-network potentials in real MD engines, fast.

Data flows one way: structure → CG topology (:mod:`gnnmd.topology`,
:mod:`gnnmd.systems`) → model (:mod:`gnnmd.models`, :mod:`gnnmd.nn`) → engine
(:mod:`gnnmd.sim`, :mod:`gnnmd.export` for OpenMM) → reporters.
Units are OpenMM's throughout (nm, kJ/mol, ps, amu, K): see :mod:`gnnmd.units`.
"""

# torch must be imported before openmm: see gnnmd._openmm_plugins. torch itself is imported
# on first use (it takes over a second), so that `gnnmd models` and the like answer at once.
from gnnmd._openmm_plugins import torch_before_openmm

torch_before_openmm()

__version__ = "0.1.0"
