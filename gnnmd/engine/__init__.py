"""What every engine shares: thermostat settings, the force-provider protocol, the bench row.

The engines are the replica runner (:mod:`gnnmd.sim`), OpenMM (:mod:`gnnmd.openmm`), ASE
(:mod:`gnnmd.ase`) and the static-shape IPU path (:mod:`gnnmd.ipu`). They import this layer,
never each other.

=============================  ===============================================================
module                         concept
=============================  ===============================================================
``gnnmd.engine.settings``      :class:`LangevinSettings`: time step, temperature, friction
``gnnmd.engine.forces``        :class:`ForceProvider`: what a runner asks forces of
``gnnmd.engine.bench``         :class:`BenchResult`, provenance and the bench JSON document
=============================  ===============================================================
"""

from gnnmd.engine.settings import LangevinSettings

__all__ = ["LangevinSettings"]
