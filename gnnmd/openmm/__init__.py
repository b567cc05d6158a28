"""gnnmd inside OpenMM: Systems, Simulations, XML set-ups and the openmm-ml registration.

=============================  ===============================================================
module                         concept
=============================  ===============================================================
``gnnmd.openmm.platforms``     platform (Reference, CPU, CUDA) and precision, chosen in one place
``gnnmd.openmm.topology``      CG topology <-> ``openmm.app.Topology``; bead masses
``gnnmd.openmm.forces``        the TorchForce route and the PythonForce route
``gnnmd.openmm.system``        :func:`create_system`: particles, masses, box, one gnnmd force
``gnnmd.openmm.simulation``    :func:`create_simulation`: Langevin, native start, reporters
``gnnmd.openmm.xml``           :func:`write_xml_setup`: system/integrator/state XML + CG PDB
``gnnmd.openmm.mlpotential``   ``MLPotential('gnnmd', ...)`` for openmm-ml (entry point)
``gnnmd.openmm.benchmark``     ns/day of an OpenMM Simulation and each route's overhead
=============================  ===============================================================

Units are OpenMM's and gnnmd's: nm, ps, kJ/mol, amu, K (time steps given in fs).
Importing this package imports openmm (gnnmd has already imported torch, which
avoids the openmm-torch import-order trap); openmmtorch is imported only when a
TorchForce is built.
"""

from gnnmd.openmm.platforms import PLATFORMS, PRECISIONS, PlatformSpec, resolve_platform
from gnnmd.openmm.simulation import create_simulation, energy_and_forces, trajectory_reporter
from gnnmd.openmm.system import ROUTES, create_system
from gnnmd.openmm.topology import cg_topology_from_openmm, coarse_grain, openmm_topology
from gnnmd.openmm.xml import write_xml_setup

__all__ = [
    "PLATFORMS",
    "PRECISIONS",
    "ROUTES",
    "PlatformSpec",
    "cg_topology_from_openmm",
    "coarse_grain",
    "create_simulation",
    "create_system",
    "energy_and_forces",
    "openmm_topology",
    "resolve_platform",
    "trajectory_reporter",
    "write_xml_setup",
]
