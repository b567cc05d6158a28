"""Boltzmann inversion recovers the constants of synthetic harmonic and Fourier data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.errors import BeadTypeError
from gnnmd.nn.priors.base import canonical_tuples, tuple_keys
from gnnmd.nn.priors.fit import REPULSION_SIGMA_FRACTION, fit_boltzmann_priors
from gnnmd.nn.priors.geometry import dihedral_angles
from gnnmd.topology import custom_topology
from gnnmd.units import kt_kj_per_mol

TEMPERATURE_K = 300.0
KT = kt_kj_per_mol(TEMPERATURE_K)
TYPES = ["X.A", "X.B", "X.C", "X.D"]
BONDS = {(0, 1): (30000.0, 0.38), (1, 2): (50000.0, 0.15), (2, 3): (20000.0, 0.30)}  # k kJ/mol/nm², r0 nm
ANGLES = {(0, 1, 2): (60.0, 1.9), (1, 2, 3): (120.0, 2.2)}  # k kJ/mol/rad², θ0 rad
DIHEDRAL = {"cos": [1.5, -2.0, 0.0], "sin": [0.8, 0.0, 0.5]}  # kJ/mol


def sample(density, low, high, size, rng):
    """Draw from an unnormalised 1-D density by inverse CDF on a fine grid."""
    grid = np.linspace(low, high, 200001)
    cdf = np.cumsum(density(grid))
    return np.interp(rng.uniform(0, cdf[-1], size), cdf, grid)


def dihedral_energy(phi):
    n = np.arange(1, 4)
    return np.cos(np.outer(phi, n)) @ DIHEDRAL["cos"] + np.sin(np.outer(phi, n)) @ DIHEDRAL["sin"]


def place(a, b, c, bond, angle, torsion):
    """Position of d with |cd| = bond, angle b-c-d = angle, dihedral a-b-c-d = torsion (NeRF)."""
    bc = (c - b) / np.linalg.norm(c - b, axis=1, keepdims=True)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    m = np.stack([bc, np.cross(normal, bc), normal], axis=2)
    local = np.stack(
        [-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)], axis=1
    )
    return c + np.einsum("fij,fj->fi", m, bond[:, None] * local)


def synthetic_frames(frames=20000, seed=0):
    rng = np.random.default_rng(seed)
    r = {
        b: sample(lambda x, k=k, r0=r0: x**2 * np.exp(-0.5 * k * (x - r0) ** 2 / KT), 0.0, 1.0, frames, rng)
        for b, (k, r0) in BONDS.items()
    }
    theta = {
        a: sample(
            lambda x, k=k, t0=t0: np.sin(x) * np.exp(-0.5 * k * (x - t0) ** 2 / KT), 0.0, np.pi, frames, rng
        )
        for a, (k, t0) in ANGLES.items()
    }
    phi = sample(lambda x: np.exp(-dihedral_energy(x) / KT), -np.pi, np.pi, frames, rng)
    x = np.zeros((frames, 4, 3))
    x[:, 1, 0] = r[(0, 1)]
    t = theta[(0, 1, 2)]
    x[:, 2] = x[:, 1] + r[(1, 2)][:, None] * np.stack([-np.cos(t), np.sin(t), np.zeros_like(t)], axis=1)
    x[:, 3] = place(x[:, 0], x[:, 1], x[:, 2], r[(2, 3)], theta[(1, 2, 3)], phi)
    return x, phi


def row(table, types):
    key = int(tuple_keys(canonical_tuples(torch.tensor([types])), len(TYPES)))
    return int(torch.nonzero(table["keys"] == key))


def test_boltzmann_inversion_recovers_constants():
    x, phi = synthetic_frames()
    measured = dihedral_angles(
        torch.tensor(x[:50]).reshape(-1, 3),
        torch.arange(200).reshape(50, 4),
        torch.zeros(200, dtype=torch.long),
    )
    np.testing.assert_allclose(np.cos(measured.numpy()), np.cos(phi[:50]), atol=1e-9)  # construction is right
    topology = custom_topology("chain", TYPES, [12.0] * 4, list(BONDS))
    tables = fit_boltzmann_priors(
        [(topology, x)],
        TYPES,
        np.arange(4),
        TYPES,
        exclusion_order=2,
        cutoff_nm=1.5,
        temperature_k=TEMPERATURE_K,
    )
    for (i, j), (k, r0) in BONDS.items():
        n = row(tables["bonds"], [i, j])
        assert abs(float(tables["bonds"]["k"][n]) / k - 1) < 0.05
        assert abs(float(tables["bonds"]["r0"][n]) - r0) < 2e-4
    for (i, j, m), (k, t0) in ANGLES.items():
        n = row(tables["angles"], [i, j, m])
        assert abs(float(tables["angles"]["k"][n]) / k - 1) < 0.05
        assert abs(float(tables["angles"]["theta0"][n]) - t0) < 5e-3
    n = row(tables["dihedrals"], [0, 1, 2, 3])
    np.testing.assert_allclose(tables["dihedrals"]["cos_coefficients"][n], DIHEDRAL["cos"], atol=0.15)
    np.testing.assert_allclose(tables["dihedrals"]["sin_coefficients"][n], DIHEDRAL["sin"], atol=0.15)
    closest = np.linalg.norm(x[:, 3] - x[:, 0], axis=1).min()
    n = row(tables["repulsion"], [0, 3])
    assert abs(float(tables["repulsion"]["sigma"][n]) - REPULSION_SIGMA_FRACTION * closest) < 1e-12


def test_too_few_samples_is_refused():
    x, _ = synthetic_frames(frames=10)
    topology = custom_topology("chain", TYPES, [12.0] * 4, list(BONDS))
    with pytest.raises(BeadTypeError, match="X.A-X.B: only 10 samples"):
        fit_boltzmann_priors(
            [(topology, x)], TYPES, np.arange(4), ["X.A", "X.B", "X.C", "X.D"], 2, 1.5, 300.0
        )


@pytest.mark.parametrize(("kappa", "centre"), [(200.0, np.pi - 0.05), (40.0, -1.2), (2000.0, 0.3)])
def test_narrow_dihedral_fit_stays_a_single_bounded_well(kappa, centre):
    """Planar-like dihedrals fill a few bins: the fit must not invent deep wells where no sample went.

    (A plain 3-harmonic fit of such data gave coefficients of ~6e4 kJ/mol and blew a
    chignolin simulation apart.)
    """
    from gnnmd.nn.priors.fit import MAX_DIHEDRAL_AMPLITUDE_KT, _fit_fourier

    rng = np.random.default_rng(1)
    samples = np.angle(np.exp(1j * rng.vonmises(centre, kappa, 20000)))
    a, b = _fit_fourier(samples, KT, 3)
    assert np.abs(a).sum() + np.abs(b).sum() <= max(MAX_DIHEDRAL_AMPLITUDE_KT, 1.5 * kappa) * KT
    grid = np.linspace(-np.pi, np.pi, 3601)
    n = np.arange(1, 4)
    energy = np.cos(np.outer(grid, n)) @ a + np.sin(np.outer(grid, n)) @ b
    lowest = grid[np.argmin(energy)]
    assert abs(np.angle(np.exp(1j * (lowest - centre)))) < 0.1  # the one well sits on the data
    # Curvature at the well: about kT·κ for a von Mises density, never orders of magnitude more
    # (for κ = 2000 the 80-bin histogram cannot resolve the width and the fit is softer).
    second = -(np.cos(lowest * n) @ (a * n**2) + np.sin(lowest * n) @ (b * n**2))
    assert 0 < second < 3.0 * KT * kappa
    if kappa <= 200:
        assert second > 0.3 * KT * kappa
