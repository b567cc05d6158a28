"""Static-shape inference: fixed-size graph packing, a static-shape model, PopTorch and ONNX.

:mod:`gnnmd.ipu.packing` packs graphs into packs of fixed capacity (LPFHP);
:mod:`gnnmd.ipu.static_model` runs a model's weights on them with fixed shapes
and masks; :mod:`gnnmd.ipu.poptorch_backend` wraps that model for Graphcore
IPUs (``--device ipu``); :mod:`gnnmd.ipu.onnx_export` writes it as ONNX. See docs/ipu.md.
"""

from gnnmd.ipu.packing import PackCapacity, PackingPlan, PackLayout, choose_capacity, pack_graphs
from gnnmd.ipu.static_model import NeighborCapacityError, StaticEvaluator, StaticPotential, build_static

__all__ = [
    "NeighborCapacityError", "PackCapacity", "PackLayout", "PackingPlan", "StaticEvaluator",
    "StaticPotential", "build_static", "choose_capacity", "pack_graphs",
]  # fmt: skip
