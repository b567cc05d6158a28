"""Shared machinery of the physical priors: parameters keyed by prior-type tuples.

Each bead type maps to a *prior type* (``bead_to_prior_type``): a model may key
its priors on full bead types ("TYR.CA") or on coarser classes ("CA"), and any
protein whose terms are covered can be simulated. A bonded term of order k
(bond 2, angle 3, dihedral 4, non-bonded pair 2) looks up its parameters by the
canonical orientation of its prior-type tuple, encoded as one int64 key
``Σ_c t_c P^(k-1-c)`` and found by binary search in a sorted key table.

The tables are buffers, not trainable parameters: priors are fitted (Boltzmann
inversion) and then held fixed while the network learns the rest.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor, nn

from gnnmd.errors import BeadTypeError


def canonical_tuples(types: Tensor) -> Tensor:
    """Orient (M, k) prior-type tuples canonically: a term and its reverse share parameters.

    Pairs are sorted; angles a-b-c become c-b-a when a > c; dihedrals a-b-c-d
    become d-c-b-a when (a, b) > (d, c). Bond lengths, angles and dihedral
    angles are all unchanged by reversing the order of their beads.
    """
    order = types.shape[1]
    flipped = types.flip(1)
    if order == 2 or order == 3:
        swap = types[:, 0] > types[:, -1]
    elif order == 4:
        swap = (types[:, 0] > types[:, 3]) | ((types[:, 0] == types[:, 3]) & (types[:, 1] > types[:, 2]))
    else:
        raise ValueError(f"terms have 2, 3 or 4 beads, got {order}")
    return torch.where(swap[:, None], flipped, types)


def canonical_tuple(term: tuple[int, ...]) -> tuple[int, ...]:
    """:func:`canonical_tuples` for one tuple of plain ints (bead or type indices)."""
    flipped = term[::-1]
    if len(term) == 4:
        return flipped if (term[0], term[1]) > (term[3], term[2]) else term
    return flipped if term[0] > term[-1] else term


def tuple_keys(types: Tensor, num_prior_types: int) -> Tensor:
    """(M, k) canonical prior-type tuples -> (M,) int64 keys."""
    keys = torch.zeros(types.shape[0], dtype=torch.int64, device=types.device)
    for column in range(types.shape[1]):
        keys = keys * num_prior_types + types[:, column]
    return keys


class TypeKeyedTerm(nn.Module):
    """Base of one prior term: a sorted key table and per-key parameter rows.

    Args:
        order: beads per term (2, 3 or 4).
        num_prior_types: P, the number of prior types.
        keys: (K,) int64 sorted unique keys.
        parameters: name -> (K, ...) float tensor, row r belongs to keys[r].
    """

    def __init__(self, order: int, num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor]) -> None:
        super().__init__()
        if keys.ndim != 1 or (keys.numel() > 1 and bool((keys[1:] <= keys[:-1]).any())):
            raise ValueError("prior keys must be a sorted 1-D tensor without duplicates")
        for name, values in parameters.items():
            if values.shape[0] != keys.shape[0]:
                raise ValueError(
                    f"prior parameter {name!r} has {values.shape[0]} rows, expected {keys.shape[0]}"
                )
        self.order = order
        self.num_prior_types = num_prior_types
        self.register_buffer("keys", keys.to(torch.int64))
        self.parameter_names: List[str] = sorted(parameters)
        for name in self.parameter_names:
            self.register_buffer(name, parameters[name].to(torch.get_default_dtype()))

    def term_keys(self, term_prior_types: Tensor) -> Tensor:
        """(M, k) prior types of M terms -> (M,) canonical keys."""
        return tuple_keys(canonical_tuples(term_prior_types), self.num_prior_types)

    def rows(self, term_prior_types: Tensor) -> Tensor:
        """(M,) parameter row of each term. Terms must be covered (see :meth:`missing`)."""
        found = torch.searchsorted(self.keys, self.term_keys(term_prior_types))
        return found.clamp(max=max(self.keys.shape[0] - 1, 0))

    def missing(self, term_prior_types: Tensor) -> Tensor:
        """(M,) bool: terms whose prior-type tuple has no parameters."""
        if self.keys.shape[0] == 0:
            return torch.ones(term_prior_types.shape[0], dtype=torch.bool, device=term_prior_types.device)
        keys = self.term_keys(term_prior_types)
        return self.keys[self.rows(term_prior_types)] != keys

    def table(self) -> Dict[str, Tensor]:
        """The term's keys and parameters, for checkpoints."""
        out = {"keys": self.keys}
        for name in self.parameter_names:
            out[name] = getattr(self, name)
        return out


def check_coverage(
    term: TypeKeyedTerm,
    term_prior_types: Tensor,
    prior_type_names: List[str],
    label: str,
    source: str,
) -> None:
    """Raise BeadTypeError naming the first ``label`` term whose prior types have no parameters."""
    missing = term.missing(term_prior_types)
    if bool(missing.any()):
        first = int(torch.nonzero(missing)[0, 0])
        names = [prior_type_names[int(t)] for t in term_prior_types[first]]
        raise BeadTypeError(
            f"{source}: the model's {label} prior has no parameters for prior types "
            f"{'-'.join(names)} ({int(missing.sum())} of {missing.numel()} {label} terms uncovered)"
        )
