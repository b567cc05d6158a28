"""Packed graph batches: many CG molecules as one set of flat tensors.

A :class:`GraphBatch` holds G graphs (replicas of one protein, or different
proteins mixed) packed back to back, never padded. Graph ``g`` owns beads
``ptr[g]:ptr[g+1]``; every index tensor uses global bead indices. Positions are
not part of the batch: they change every step while the batch does not.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.errors import BeadTypeError
from gnnmd.topology import CGTopology


class GraphBatch(NamedTuple):
    """The static description of a packed batch (TorchScript-compatible).

    Attributes:
        types: (N,) int64, index of each bead's type in the model's vocabulary.
        ptr: (G+1,) int64 CSR pointer; graph g owns beads ptr[g]:ptr[g+1].
        graph_index: (N,) int64, the graph of each bead.
        bonds: (B, 2) int64 global bead indices.
        angles: (A, 3) int64.
        dihedrals: (D, 4) int64.
        pairs: (2, P) int64 candidate non-bonded pairs i<j within each graph,
            bonded exclusions already removed. The cutoff is applied per step.
        residues: (N,) int64, the residue of each bead, numbered across the batch (beads of two
            graphs never share one): for priors that leave out pairs within a residue.
    """

    types: Tensor
    ptr: Tensor
    graph_index: Tensor
    bonds: Tensor
    angles: Tensor
    dihedrals: Tensor
    pairs: Tensor
    residues: Tensor


#: Appended to the type of a molecule's first and last bead by models with terminal types.
TERMINAL_SUFFIX = "-terminal"


def model_bead_types(
    topology: CGTopology, vocabulary: Sequence[str] = (), terminal_types: bool = False
) -> tuple[str, ...]:
    """The type name of each bead as a model with ``vocabulary`` sees it: ``topology.bead_types``,
    except that

    * a bead of a residue spelled as a variant (``"HSD"``) whose type the vocabulary has
      (``"HSD.CA"``, as mlcg's ``CA_MAP``) takes that type; other models read it as the canonical
      residue (``"HIS.CA"``);
    * with ``terminal_types`` the molecule's first and last bead are ``"TYR.CA-terminal"`` (mlcg's
      ``special_terminal``: the chain ends get types of their own).
    """
    known = set(vocabulary)
    names = [
        variant_type if variant != residue and (variant_type := f"{variant}.{bead}") in known else own
        for own, residue, variant, bead in zip(
            topology.bead_types, topology.residue_names, topology.residue_variants, topology.bead_names,
            strict=True,
        )
    ]  # fmt: skip
    if terminal_types and names:
        for end in {0, len(names) - 1}:
            names[end] += TERMINAL_SUFFIX
    return tuple(names)


def resolve_types(
    topology: CGTopology, vocabulary: Sequence[str], terminal_types: bool = False
) -> np.ndarray:
    """Indices of the beads' types (:func:`model_bead_types`) in ``vocabulary``; unknown types raise
    BeadTypeError."""
    index = {name: i for i, name in enumerate(vocabulary)}
    names = model_bead_types(topology, vocabulary, terminal_types)
    unknown = sorted({t for t in names if t not in index})
    if unknown:
        where = names.index(unknown[0])
        raise BeadTypeError(
            f"{topology.source}: bead type {unknown[0]!r} (bead {where}, "
            f"{topology.residue_names[where]} {int(topology.residue_ids[where])}) is not in the "
            f"model's vocabulary of {len(vocabulary)} types; unknown types: {unknown}"
        )
    return np.array([index[t] for t in names], dtype=np.int64)


def residue_numbers(topology: CGTopology) -> np.ndarray:
    """(n,) int64 residue of each bead from 0: a new residue wherever the chain, the residue id or
    the residue name changes from the bead before."""
    if topology.n_beads == 0:
        return np.zeros(0, dtype=np.int64)
    keys = list(zip(topology.chain_ids, topology.residue_ids.tolist(), topology.residue_names, strict=True))
    starts = [False] + [keys[i] != keys[i - 1] for i in range(1, len(keys))]
    return np.cumsum(starts).astype(np.int64)


def candidate_pairs(n_beads: int, excluded: np.ndarray) -> np.ndarray:
    """All pairs i<j of one graph minus ``excluded`` ((X, 2), i<j); returns (2, P) int64."""
    i, j = np.triu_indices(n_beads, k=1)
    keep = np.ones(i.shape[0], dtype=bool)
    if len(excluded):
        keys = i.astype(np.int64) * n_beads + j
        drop = excluded[:, 0].astype(np.int64) * n_beads + excluded[:, 1]
        keep = ~np.isin(keys, drop)
    return np.stack([i[keep], j[keep]]).astype(np.int64)


def pack(
    topologies: Sequence[CGTopology],
    vocabulary: Sequence[str],
    exclusion_order: int,
    device: torch.device | str | None = None,
    terminal_types: bool = False,
) -> GraphBatch:
    """Pack ``topologies`` into one :class:`GraphBatch`.

    Args:
        topologies: the graphs, in order (repeat a topology for replicas).
        vocabulary: the model's bead-type names; a type outside it raises BeadTypeError.
        exclusion_order: non-bonded pairs separated by at most this many bonds are
            excluded from the pair list (0 = none, 2 = bonds and angles).
        device: where the tensors live.
        terminal_types: each topology's first and last bead take their ``-terminal`` types.
    """
    if len(topologies) == 0:
        raise ValueError("pack() needs at least one topology")
    types, bonds, angles, dihedrals, pairs, sizes, residues = [], [], [], [], [], [], []
    cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    offset = residue_offset = 0
    for topology in topologies:
        # Replicas share one topology object: resolve it once.
        if id(topology) not in cache:
            excluded = topology.excluded_pairs(exclusion_order)
            cache[id(topology)] = (
                resolve_types(topology, vocabulary, terminal_types),
                candidate_pairs(topology.n_beads, excluded),
                residue_numbers(topology),
            )
        type_index, graph_pairs, graph_residues = cache[id(topology)]
        types.append(type_index)
        residues.append(graph_residues + residue_offset)
        residue_offset += int(graph_residues[-1]) + 1 if len(graph_residues) else 0
        bonds.append(topology.bonds + offset)
        angles.append(topology.angles + offset)
        dihedrals.append(topology.dihedrals + offset)
        pairs.append(graph_pairs + offset)
        sizes.append(topology.n_beads)
        offset += topology.n_beads

    def cat(arrays: list[np.ndarray], width: int) -> Tensor:
        rows = [a.reshape(-1, width) for a in arrays]
        return torch.as_tensor(np.concatenate(rows).astype(np.int64), device=device)

    ptr = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.int64, device=device)
    counts = ptr[1:] - ptr[:-1]
    graph_index = torch.repeat_interleave(torch.arange(len(sizes), device=device), counts)
    return GraphBatch(
        types=torch.as_tensor(np.concatenate(types), device=device),
        ptr=ptr,
        graph_index=graph_index,
        bonds=cat(bonds, 2),
        angles=cat(angles, 3),
        dihedrals=cat(dihedrals, 4),
        pairs=torch.as_tensor(np.concatenate(pairs, axis=1), device=device),
        residues=torch.as_tensor(np.concatenate(residues), device=device),
    )


def batch_to(batch: GraphBatch, device: torch.device | str) -> GraphBatch:
    """The same batch with every tensor moved to ``device``."""
    return GraphBatch(*(t.to(device) for t in batch))
