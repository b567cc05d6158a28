"""Simulation engine: batched Langevin dynamics of many replicas through one model call per step."""

from gnnmd.sim.integrators import LangevinSettings
from gnnmd.sim.runner import ReplicaRunner

__all__ = ["LangevinSettings", "ReplicaRunner"]
