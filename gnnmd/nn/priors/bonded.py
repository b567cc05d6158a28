"""Bonded priors: harmonic bonds, harmonic angles (in θ or cos θ), Fourier dihedrals (kJ/mol, nm, rad)."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from gnnmd.nn.priors.base import TypeKeyedTerm
from gnnmd.nn.priors.geometry import bond_angle_cosines, bond_angles, bond_lengths, dihedral_angles


class HarmonicTerm(TypeKeyedTerm):
    """E = ½ k (x - x₀)² per term, of a feature x of its beads; subclasses give x and x₀."""

    def feature(self, positions: Tensor, terms: Tensor, graph_index: Tensor, box: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def rest(self, row: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self,
        positions: Tensor,
        terms: Tensor,
        term_prior_types: Tensor,
        graph_index: Tensor,
        box: Optional[Tensor] = None,
    ) -> Tensor:
        """(M,) kJ/mol for terms (M, k) with prior types (M, k); box optional (G, 3, 3) nm."""
        row = self.rows(term_prior_types)
        deviation = self.feature(positions, terms, graph_index, box) - self.rest(row)
        return 0.5 * self.k[row] * deviation * deviation


class HarmonicBonds(HarmonicTerm):
    """E = ½ k (r - r₀)², per bond.

    Parameters per prior-type pair: ``k`` (kJ/mol/nm²) and ``r0`` (nm).
    """

    def __init__(self, num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor]) -> None:
        super().__init__(2, num_prior_types, keys, parameters)

    def feature(self, positions: Tensor, terms: Tensor, graph_index: Tensor, box: Optional[Tensor]) -> Tensor:
        return bond_lengths(positions, terms, graph_index, box)

    def rest(self, row: Tensor) -> Tensor:
        return self.r0[row]


class HarmonicAngles(HarmonicTerm):
    """E = ½ k (θ - θ₀)², per angle.

    Parameters per prior-type triple: ``k`` (kJ/mol/rad²) and ``theta0`` (rad).
    """

    def __init__(self, num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor]) -> None:
        super().__init__(3, num_prior_types, keys, parameters)
        #: The harmonic variable is θ itself (the native op's ``cosine_angles``).
        self.cosine = False

    def feature(self, positions: Tensor, terms: Tensor, graph_index: Tensor, box: Optional[Tensor]) -> Tensor:
        return bond_angles(positions, terms, graph_index, box)

    def rest(self, row: Tensor) -> Tensor:
        return self.theta0[row]

    def rest_values(self) -> Tensor:
        """(K,) θ₀ of every row, rad."""
        return self.theta0


class HarmonicCosineAngles(HarmonicTerm):
    """E = ½ k (cos θ - cos θ₀)², per angle (mlcg's HarmonicAngles; no singularity at θ = π).

    Parameters per prior-type triple: ``k`` (kJ/mol) and ``cos_theta0`` (dimensionless).
    """

    def __init__(self, num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor]) -> None:
        super().__init__(3, num_prior_types, keys, parameters)
        #: The harmonic variable is cos θ (the native op's ``cosine_angles``).
        self.cosine = True

    def feature(self, positions: Tensor, terms: Tensor, graph_index: Tensor, box: Optional[Tensor]) -> Tensor:
        return bond_angle_cosines(positions, terms, graph_index, box)

    def rest(self, row: Tensor) -> Tensor:
        return self.cos_theta0[row]

    def rest_values(self) -> Tensor:
        """(K,) cos θ₀ of every row."""
        return self.cos_theta0


def angle_term(num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor]) -> TypeKeyedTerm:
    """The angle prior its parameters describe: ``cos_theta0`` (cosine form) or ``theta0`` (radians)."""
    if "cos_theta0" in parameters:
        return HarmonicCosineAngles(num_prior_types, keys, parameters)
    return HarmonicAngles(num_prior_types, keys, parameters)


class FourierDihedrals(TypeKeyedTerm):
    """E = c + Σₙ₌₁..M aₙ cos(nφ) + bₙ sin(nφ), per dihedral (mlcg's form).

    Parameters per prior-type quadruple: ``cos_coefficients`` and
    ``sin_coefficients``, each (M,) kJ/mol, and ``constant`` (kJ/mol; zero unless
    given: it moves no force, only the energy zero, e.g. TorchMD's k (1 + cos(nφ - φ₀))).
    """

    def __init__(self, num_prior_types: int, keys: Tensor, parameters: Dict[str, Tensor]) -> None:
        parameters = dict(parameters)
        if "constant" not in parameters:
            parameters["constant"] = torch.zeros(keys.shape[0])
        super().__init__(4, num_prior_types, keys, parameters)

    def forward(
        self,
        positions: Tensor,
        dihedrals: Tensor,
        term_prior_types: Tensor,
        graph_index: Tensor,
        box: Optional[Tensor] = None,
    ) -> Tensor:
        """(D,) kJ/mol for dihedrals (D, 4) with prior types (D, 4)."""
        row = self.rows(term_prior_types)
        a = self.cos_coefficients[row]
        b = self.sin_coefficients[row]
        harmonics = torch.arange(1, a.shape[1] + 1, dtype=positions.dtype, device=positions.device)
        phase = dihedral_angles(positions, dihedrals, graph_index, box)[:, None] * harmonics
        return (a * torch.cos(phase) + b * torch.sin(phase)).sum(dim=1) + self.constant[row]
