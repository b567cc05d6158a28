"""Static shapes: what compiles once, for CUDA graphs and for the IPU.

Compilers that replay fixed kernels (CUDA graphs, Graphcore's PopART, ONNX runtimes) need
tensors whose shapes do not change from step to step. One package serves both users:

==============================  =============================================================
module                          concept
==============================  =============================================================
``gnnmd.static.pair_buffer``    a fixed-capacity pair buffer; pairs outside the cutoff masked
``gnnmd.static.stepper``        the runner's whole step in two CUDA graphs (``--cuda-graph``)
``gnnmd.static.packing``        many graphs into packs of fixed capacity (LPFHP): the plan
``gnnmd.static.layout``         a plan made into fixed-shape tensors; flat beads <-> packs
``gnnmd.static.model``          a potential's weights on fixed-size packs; host evaluator
==============================  =============================================================

The IPU adapter (:mod:`gnnmd.ipu`) and the replica runner (:mod:`gnnmd.sim`) use it; it
imports neither. Units: nm, kJ/mol.
"""

from gnnmd.static.layout import PackLayout, StaticBatch, build_layout
from gnnmd.static.model import NeighborCapacityError, StaticEvaluator, StaticPotential, build_static
from gnnmd.static.packing import PackCapacity, PackingPlan, choose_capacity, pack_graphs
from gnnmd.static.pair_buffer import PairBuffer, masked_within_cutoff
from gnnmd.static.stepper import StaticStepper

__all__ = [
    "NeighborCapacityError", "PackCapacity", "PackLayout", "PackingPlan", "PairBuffer", "StaticBatch",
    "StaticEvaluator", "StaticPotential", "StaticStepper", "build_layout", "build_static",
    "choose_capacity", "masked_within_cutoff", "pack_graphs",
]  # fmt: skip
