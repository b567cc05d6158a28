"""Simulation engine: batched Langevin dynamics of many replicas through one model call per step.

:class:`ReplicaRunner` steps the replicas; :class:`Simulation` adds outputs,
checkpoints and health checks; :mod:`gnnmd.distributed` shards replicas over
torchrun processes; :mod:`gnnmd.sim.benchmark` measures ns/day.
"""

from gnnmd.engine import LangevinSettings
from gnnmd.sim.outputs import OutputOptions
from gnnmd.sim.runner import ReplicaRunner
from gnnmd.sim.simulation import Simulation

__all__ = ["LangevinSettings", "OutputOptions", "ReplicaRunner", "Simulation"]
