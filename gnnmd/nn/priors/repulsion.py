"""Non-bonded repulsion prior: keeps beads from overlapping where data never went."""

from __future__ import annotations

from typing import Dict

from torch import Tensor

from gnnmd.nn.priors.base import TypeKeyedTerm


class Repulsion(TypeKeyedTerm):
    """E = ε [(σ/r)⁶ - (σ/r_c)⁶] for pairs inside the cutoff r_c, else 0 (without the shift: ε (σ/r)⁶).

    The shift makes the energy continuous at r_c (the force there, 6εσ⁶/r_c⁷,
    is negligible for σ ≪ r_c). Parameters per prior-type pair: ``sigma`` (nm)
    and ``epsilon`` (kJ/mol). Pairs are the model's non-bonded pairs (bonded
    exclusions removed).
    """

    def __init__(
        self, num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor], cutoff_nm: float
    ) -> None:
        super().__init__(2, num_prior_types, keys, parameters)
        self.cutoff_nm = float(cutoff_nm)
        #: Subtract the value at the cutoff (False: TorchMD's unshifted RepulsionCG).
        self.shift = True

    def forward(self, distances: Tensor, term_prior_types: Tensor) -> Tensor:
        """(E,) kJ/mol for pairs at ``distances`` (E,) nm with prior types (E, 2)."""
        row = self.rows(term_prior_types)
        sigma = self.sigma[row]
        inner = (sigma / distances) ** 6
        if not self.shift:
            return self.epsilon[row] * inner
        outer = (sigma / self.cutoff_nm) ** 6
        return self.epsilon[row] * (inner - outer)
