"""CGSchNet's physical priors, summed into one module.

:class:`PriorSet` holds harmonic bonds, harmonic angles (in θ, or in cos θ when the
table holds ``cos_theta0``), Fourier dihedrals and
non-bonded repulsion, the bead-type → prior-type map they share, and turns a
batch into per-graph prior energies (kJ/mol).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from gnnmd.errors import BeadTypeError
from gnnmd.graph import GraphBatch
from gnnmd.nn.priors.base import TypeKeyedTerm, check_coverage
from gnnmd.nn.priors.bonded import FourierDihedrals, HarmonicBonds, angle_term
from gnnmd.nn.priors.geometry import bond_lengths
from gnnmd.nn.priors.repulsion import Repulsion

PRIOR_TERMS = ("bonds", "angles", "dihedrals", "repulsion")


class PriorSet(nn.Module):
    """All priors of a model.

    Args:
        prior_types: names of the P prior types.
        bead_to_prior_type: (V,) int64, the prior type of each bead type in the
            model's vocabulary.
        tables: term name (see :data:`PRIOR_TERMS`) -> its key table and
            parameters (see each term's class for names and units).
        cutoff_nm: the model's cutoff, where the repulsion is shifted to zero.
    """

    def __init__(
        self,
        prior_types: List[str],
        bead_to_prior_type: Tensor,
        tables: Dict[str, Dict[str, Tensor]],
        cutoff_nm: float,
    ) -> None:
        super().__init__()
        unknown = sorted(set(tables) ^ set(PRIOR_TERMS))
        if unknown:
            raise ValueError(f"prior tables must be exactly {PRIOR_TERMS}; mismatched: {unknown}")
        if int(bead_to_prior_type.max()) >= len(prior_types) or int(bead_to_prior_type.min()) < 0:
            raise ValueError("bead_to_prior_type refers to a prior type that does not exist")
        self.prior_types = list(prior_types)
        self.register_buffer("bead_to_prior_type", bead_to_prior_type.to(torch.int64))
        count = len(prior_types)

        def split(name: str) -> tuple[Tensor, Dict[str, Tensor]]:
            table = dict(tables[name])
            return table.pop("keys"), table

        self.bonds = HarmonicBonds(count, *split("bonds"))
        self.angles = angle_term(count, *split("angles"))
        self.dihedrals = FourierDihedrals(count, *split("dihedrals"))
        self.repulsion = Repulsion(count, *split("repulsion"), cutoff_nm=cutoff_nm)
        #: Bonded separations (1, 2, 3) inside the pair list that the repulsion leaves out
        #: (set from the model config; see PotentialConfig.repulsion_exclusions).
        self.repulsion_exclusions: List[int] = []
        #: The repulsion leaves out pairs within one residue (mlcg's ``residue_exclusion``; set from
        #: the model config, PotentialConfig.repulsion_residue_exclusion).
        self.residue_exclusion = False
        #: The terms that contribute (set from the model config; a model without, e.g., an angle
        #: term neither computes angles nor needs parameters for them).
        self.terms: List[str] = list(PRIOR_TERMS)
        #: The terms through registered ops on CPU (:class:`gnnmd.kernels.native_geometry.NativePriorTerms`,
        #: set by the tabulated backend; first derivatives only, so not for training), or None.
        self.kernel = None

    def term_types(self, batch: GraphBatch, terms: Tensor) -> Tensor:
        """(M, k) prior types of the beads of M terms (M, k)."""
        return self.bead_to_prior_type[batch.types][terms]

    def forward(
        self,
        positions: Tensor,
        batch: GraphBatch,
        pairs: Tensor,
        distances: Tensor,
        box: Optional[Tensor] = None,
    ) -> Tensor:
        """Per-graph prior energy.

        Args:
            positions: (N, 3) nm.
            batch: the packed graphs.
            pairs: (2, E) non-bonded pairs inside the cutoff.
            distances: (E,) nm.
            box: optional (G, 3, 3) nm periodic box vectors.
        Returns:
            (G,) kJ/mol.
        """
        num_graphs = batch.ptr.shape[0] - 1
        if self.kernel is not None and native_ops_apply(positions, box):
            return self._native(positions, batch, pairs, distances, box, num_graphs)
        energy = torch.zeros(num_graphs, dtype=positions.dtype, device=positions.device)
        graph = batch.graph_index
        if "bonds" in self.terms:
            bonds = self.bonds(positions, batch.bonds, self.term_types(batch, batch.bonds), graph, box)
            energy = energy.index_add(0, graph[batch.bonds[:, 0]], bonds)
        if "angles" in self.terms:
            angles = self.angles(positions, batch.angles, self.term_types(batch, batch.angles), graph, box)
            energy = energy.index_add(0, graph[batch.angles[:, 0]], angles)
        if "dihedrals" in self.terms:
            dihedrals = self.dihedrals(
                positions, batch.dihedrals, self.term_types(batch, batch.dihedrals), graph, box
            )
            energy = energy.index_add(0, graph[batch.dihedrals[:, 0]], dihedrals)
        if "repulsion" not in self.terms:
            return energy
        pair_types = self.term_types(batch, pairs.t())
        repulsion = self.repulsion(distances, pair_types)
        if self.residue_exclusion:  # a mask, not a selection: static shapes stay static
            repulsion = repulsion * self._residues_apart(batch, pairs).to(repulsion.dtype)
        energy = energy.index_add(0, graph[pairs[0]], repulsion)
        for separation in self.repulsion_exclusions:
            energy = energy - self._excluded_repulsion(positions, batch, separation, num_graphs, box)
        return energy

    def _native(
        self,
        positions: Tensor,
        batch: GraphBatch,
        pairs: Tensor,
        distances: Tensor,
        box: Optional[Tensor],
        num_graphs: int,
    ) -> Tensor:
        """:meth:`forward` through :attr:`kernel` (the torch code above is its twin). Pairs at or beyond
        the cutoff may be passed: the native repulsion leaves them out."""
        bonded = [
            self._used("bonds", batch.bonds), self.bonds.keys, self.bonds.k, self.bonds.r0,
            self._used("angles", batch.angles), self.angles.keys, self.angles.k, self.angles.rest_values(),
            self._used("dihedrals", batch.dihedrals), self.dihedrals.keys, self.dihedrals.cos_coefficients,
            self.dihedrals.sin_coefficients, self.dihedrals.constant,
        ]  # fmt: skip
        repulsion = self.repulsion
        tables = [repulsion.keys, repulsion.sigma, repulsion.epsilon] if "repulsion" in self.terms else []
        excluded = [self._bonded_ends(batch, order).t() for order in self.repulsion_exclusions]
        if self.residue_exclusion:
            apart = self._residues_apart(batch, pairs)
            pairs, distances = pairs[:, apart], distances[apart]
            excluded = [ends[:, self._residues_apart(batch, ends)] for ends in excluded]
        excluded = [ends.contiguous() for ends in excluded]
        kernel = self.kernel
        assert kernel is not None
        return kernel(
            positions, batch.graph_index, box, num_graphs, self.bead_to_prior_type[batch.types],
            len(self.prior_types), bonded, self.angles.cosine, pairs, distances, tables,
            repulsion.cutoff_nm, repulsion.shift, excluded,
        )  # fmt: skip

    def _bonded_ends(self, batch: GraphBatch, separation: int) -> Tensor:
        """(M, 2) end beads of the bonded paths ``separation`` bonds long (bonds, angles, dihedrals)."""
        if separation == 1:
            return batch.bonds
        if separation == 2:
            return batch.angles[:, 0::2]
        return batch.dihedrals[:, 0::3]

    def _residues_apart(self, batch: GraphBatch, pairs: Tensor) -> Tensor:
        """(E,) bool: the two beads of each pair (2, E) are in different residues."""
        return batch.residues[pairs[0]] != batch.residues[pairs[1]]

    def _used(self, term: str, indices: Tensor) -> Tensor:
        """``indices`` where ``term`` contributes, else none of them."""
        return indices if term in self.terms else indices[:0]

    def _excluded_repulsion(
        self, positions: Tensor, batch: GraphBatch, separation: int, num_graphs: int, box: Optional[Tensor]
    ) -> Tensor:
        """(G,) repulsion of the bonded pairs ``separation`` bonds apart that lie inside the cutoff:
        they are in the pair list (the network sees them) but the repulsion leaves them out."""
        ends = self._bonded_ends(batch, separation)
        distances = bond_lengths(positions, ends, batch.graph_index, box)
        inside = distances < self.repulsion.cutoff_nm
        if self.residue_exclusion:  # left out of the repulsion already: nothing to take back
            inside = inside & self._residues_apart(batch, ends.t())
        # Outside pairs get a harmless distance: they are masked, but must not divide by zero.
        safe = torch.where(inside, distances, torch.full_like(distances, self.repulsion.cutoff_nm))
        values = self.repulsion(safe, self.term_types(batch, ends)) * inside.to(distances.dtype)
        zero = torch.zeros(num_graphs, dtype=positions.dtype, device=positions.device)
        return zero.index_add(0, batch.graph_index[ends[:, 0]], values)

    @torch.jit.unused
    def check(self, batch: GraphBatch, source: str) -> None:
        """Raise BeadTypeError if any bonded term or bead pair of ``batch`` has no parameters."""
        terms: Dict[str, tuple[TypeKeyedTerm, Tensor]] = {
            "bond": (self.bonds, batch.bonds),
            "angle": (self.angles, batch.angles),
            "dihedral": (self.dihedrals, batch.dihedrals),
            "repulsion": (self.repulsion, self._repulsion_pairs(batch).t()),
        }
        for label, (term, indices) in terms.items():
            if f"{label}s" in self.terms or label in self.terms:
                check_coverage(term, self.term_types(batch, indices), self.prior_types, label, source)
        if self.repulsion_exclusions and "repulsion" in self.terms:
            _check_tree(batch, source)

    @torch.jit.unused
    def _repulsion_pairs(self, batch: GraphBatch) -> Tensor:
        """(2, P) the pairs of ``batch`` that need repulsion parameters: all, or with a residue
        exclusion those between residues. (Pairs that repulsion_exclusions take back are computed
        first, so they need parameters too.)"""
        pairs = batch.pairs
        if self.residue_exclusion:
            pairs = pairs[:, self._residues_apart(batch, pairs)]
        return pairs

    @torch.jit.unused
    def set_values(self, tables: Dict[str, Dict[str, Tensor]]) -> None:
        """Copy every term's parameters from ``tables`` (as :meth:`tables` gives them) at this set's
        precision: the set rounds its tables to the default dtype when built, so a float64 model
        takes stored float64 values back exactly this way. Key tables must already match."""
        with torch.no_grad():
            for term, table in tables.items():
                for name, value in table.items():
                    if name != "keys":
                        getattr(getattr(self, term), name).copy_(value)

    @torch.jit.unused
    def tables(self) -> Dict[str, Dict[str, Tensor]]:
        """Every term's key table and parameters, for checkpoints."""
        return {name: getattr(self, name).table() for name in PRIOR_TERMS}


def native_ops_apply(positions: Tensor, box: Optional[Tensor]) -> bool:
    """Whether a converted model's registered geometry and prior ops serve this call: on CPU, and no
    gradient with respect to the box (the ops give no virial; a stress takes the torch path). The
    model's pair distances and its priors ask this one question, so pairs left unfiltered for the
    ops never reach the torch repulsion."""
    return not positions.is_cuda and (box is None or not box.requires_grad)


# TorchScript types these attributes from the class annotations (an empty list has no type of its
# own); set as objects, since postponed annotations are strings TorchScript does not evaluate.
PriorSet.__annotations__.update({"repulsion_exclusions": List[int], "terms": List[str]})


def _check_tree(batch: GraphBatch, source: str) -> None:
    """Repulsion exclusions subtract each bonded pair once; a pair reached by two bonded paths
    (a ring) would be subtracted twice: refuse it."""
    ends = torch.cat([batch.bonds, batch.angles[:, 0::2], batch.dihedrals[:, 0::3]])
    ends = torch.sort(ends, dim=1).values
    if torch.unique(ends, dim=0).shape[0] != ends.shape[0]:
        raise BeadTypeError(
            f"{source}: a bead pair is reached by two bonded paths (a ring); this model's repulsion "
            "exclusions (TorchMD's) are defined for bonded graphs without rings"
        )
