"""Each prior against its formula, canonical keys, and the native fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnnmd.nn.priors.base import canonical_tuples, tuple_keys
from gnnmd.nn.priors.bonded import FourierDihedrals, HarmonicAngles, HarmonicBonds
from gnnmd.nn.priors.fit import BOND_WIDTH_NM, fit_native_priors
from gnnmd.nn.priors.geometry import bond_angles, dihedral_angles
from gnnmd.nn.priors.repulsion import Repulsion
from gnnmd.units import kt_kj_per_mol

TYPES = 3  # prior types 0, 1, 2 in these tests


def keys(*tuples):
    return torch.sort(tuple_keys(canonical_tuples(torch.tensor(tuples)), TYPES)).values


def test_canonical_orientation_shares_parameters_with_reverse():
    terms = torch.tensor([[2, 0, 1, 1], [1, 1, 0, 2], [0, 2, 2, 0], [0, 2, 1, 0]])
    canonical = canonical_tuples(terms)
    reversed_canonical = canonical_tuples(terms.flip(1))
    assert torch.equal(canonical, reversed_canonical)
    assert torch.equal(canonical[0], torch.tensor([1, 1, 0, 2]))


def test_harmonic_bond_energy():
    bonds = HarmonicBonds(TYPES, keys([0, 1]), {"k": torch.tensor([400.0]), "r0": torch.tensor([0.38])})
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.41]])
    energy = bonds(
        positions, torch.tensor([[0, 1]]), torch.tensor([[1, 0]]), torch.zeros(2, dtype=torch.long)
    )
    torch.testing.assert_close(energy, torch.tensor([0.5 * 400.0 * 0.03**2]))


def test_harmonic_angle_energy_at_right_angle():
    angles = HarmonicAngles(
        TYPES, keys([0, 1, 2]), {"k": torch.tensor([50.0]), "theta0": torch.tensor([2.0])}
    )
    positions = torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.2, 0.0]])
    energy = angles(
        positions, torch.tensor([[0, 1, 2]]), torch.tensor([[2, 1, 0]]), torch.zeros(3, dtype=torch.long)
    )
    torch.testing.assert_close(energy, torch.tensor([0.5 * 50.0 * (math.pi / 2 - 2.0) ** 2]))


@pytest.mark.parametrize("phi", [-2.5, -0.3, 0.0, 1.1, math.pi])
def test_dihedral_angle_convention(phi):
    """Build a torsion of known angle; IUPAC sign (right-handed rotation is positive)."""
    positions = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [math.cos(phi), math.sin(phi), 1.0]],
        dtype=torch.float64,
    )
    graph = torch.zeros(4, dtype=torch.long)
    measured = dihedral_angles(positions, torch.tensor([[0, 1, 2, 3]]), graph)
    assert math.isclose(math.cos(float(measured)), math.cos(phi), abs_tol=1e-12)
    assert math.isclose(math.sin(float(measured)), math.sin(phi), abs_tol=1e-12)
    reverse = dihedral_angles(positions, torch.tensor([[3, 2, 1, 0]]), graph)
    torch.testing.assert_close(reverse, measured)


def test_fourier_dihedral_energy():
    a, b = torch.tensor([[1.5, -0.5]]), torch.tensor([[0.25, 2.0]])
    term = FourierDihedrals(TYPES, keys([0, 1, 1, 2]), {"cos_coefficients": a, "sin_coefficients": b})
    phi = 0.7
    positions = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [math.cos(phi), math.sin(phi), 1.0]]
    )
    energy = term(
        positions,
        torch.tensor([[0, 1, 2, 3]]),
        torch.tensor([[2, 1, 1, 0]]),
        torch.zeros(4, dtype=torch.long),
    )
    expected = 1.5 * math.cos(phi) - 0.5 * math.cos(2 * phi) + 0.25 * math.sin(phi) + 2.0 * math.sin(2 * phi)
    torch.testing.assert_close(energy, torch.tensor([expected]))


def test_repulsion_is_shifted_to_zero_at_cutoff():
    term = Repulsion(TYPES, keys([1, 1]), {"sigma": torch.tensor([0.4]), "epsilon": torch.tensor([2.0])}, 1.2)
    distances = torch.tensor([0.4, 1.2])
    energy = term(distances, torch.tensor([[1, 1], [1, 1]]))
    torch.testing.assert_close(energy, torch.tensor([2.0 * (1 - (1 / 3) ** 6), 0.0]))


def test_missing_detects_uncovered_tuples():
    bonds = HarmonicBonds(TYPES, keys([0, 1], [1, 2]), {"k": torch.ones(2), "r0": torch.ones(2)})
    missing = bonds.missing(torch.tensor([[1, 0], [2, 1], [0, 2], [2, 2]]))
    assert missing.tolist() == [False, False, True, True]


def test_angle_is_smooth_near_straight():
    positions = torch.tensor(
        [[-1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1e-9, 0.0]], dtype=torch.float64, requires_grad=True
    )
    angle = bond_angles(positions, torch.tensor([[0, 1, 2]]), torch.zeros(3, dtype=torch.long))
    angle.sum().backward()
    assert torch.isfinite(positions.grad).all()


def test_native_fit_recovers_geometry(chignolin):
    """Bond lengths of the fit are the native means; force constants follow kT/σ²."""
    from gnnmd.protein_mapping import protein_bead_vocabulary

    vocabulary = protein_bead_vocabulary("5bead")
    names = ["N", "CA", "CB", "C", "O"]
    to_prior = np.array([names.index(t.split(".")[1]) for t in vocabulary])
    tables = fit_native_priors(
        [(chignolin.topology, chignolin.positions_nm)], vocabulary, to_prior, 5, 2, 1.2, 300.0
    )
    key_ca_c = int(tuple_keys(canonical_tuples(torch.tensor([[1, 3]])), 5))
    row = int(torch.nonzero(tables["bonds"]["keys"] == key_ca_c))
    topology = chignolin.topology
    lengths = [
        np.linalg.norm(chignolin.positions_nm[j] - chignolin.positions_nm[i])
        for i, j in topology.bonds
        if {topology.bead_names[i], topology.bead_names[j]} == {"CA", "C"}
    ]
    assert math.isclose(float(tables["bonds"]["r0"][row]), float(np.mean(lengths)), rel_tol=1e-12)
    assert math.isclose(float(tables["bonds"]["k"][row]), kt_kj_per_mol(300.0) / BOND_WIDTH_NM**2)
    assert (tables["repulsion"]["sigma"] > 0).all()
