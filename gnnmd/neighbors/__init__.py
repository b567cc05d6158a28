"""Neighbour lists: which bead pairs interact this step.

The candidate pairs of a batch (all intra-graph pairs minus bonded exclusions)
are fixed by its topology and built once in :func:`gnnmd.graph.pack`. Three
ways to filter them by distance:

- :mod:`gnnmd.neighbors.dense`: every candidate, every step (the model's own path);
- :mod:`gnnmd.neighbors.verlet`: per-graph Verlet lists with a skin, rebuilt
  only when a graph's beads moved more than half the skin (same pairs, same order);
- :mod:`gnnmd.static.pair_buffer`: a fixed-capacity padded buffer for CUDA graphs.
"""

from gnnmd.neighbors.dense import displacements, within_cutoff
from gnnmd.neighbors.verlet import VerletList

__all__ = ["VerletList", "displacements", "within_cutoff"]
