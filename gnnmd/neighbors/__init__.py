"""Neighbour lists: which bead pairs interact this step.

The candidate pairs of a batch (all intra-graph pairs minus bonded exclusions)
are fixed by its topology and built once in :func:`gnnmd.graph.pack`; here they
are filtered by distance every step. The static-capacity and Verlet-skin
variants of the replica runner live beside this one.
"""

from gnnmd.neighbors.dense import displacements, within_cutoff

__all__ = ["displacements", "within_cutoff"]
