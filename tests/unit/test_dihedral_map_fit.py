"""The arithmetic of ``benchmarks/dihedral_map_fit.py`` (the ala2 free-energy diagnostic): on synthetic
forces its fits recover a known φ/ψ map — the generalized fit (forces along φ and ψ by
gnnmd.torsions.dihedral_forces, tested in test_torsions.py) even where the stiff coordinates' forces
are wrong in a way that depends on φ, which is what misleads the Cartesian fit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from gnnmd.topology import custom_topology

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "dihedral_map_fit.py"
spec = importlib.util.spec_from_file_location("dihedral_map_fit", SCRIPT)
fit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fit)


def chains(count: int, seed: int = 0) -> torch.Tensor:
    """(F, 5, 3) nm: five-bead chains with bond lengths near 0.14 nm, angles near 115°, any φ, ψ."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, 5, 3))
    for f in range(count):
        x = [np.zeros(3), np.array([0.14, 0.0, 0.0])]
        x.append(x[1] + 0.15 * np.array([np.cos(1.1), np.sin(1.1), 0.0]))
        for _ in range(2):
            a, b, c = x[-3], x[-2], x[-1]
            bc = (c - b) / np.linalg.norm(c - b)
            normal = np.cross(b - a, bc)
            normal /= np.linalg.norm(normal)
            theta, phi = np.radians(rng.uniform(105, 125)), rng.uniform(-np.pi, np.pi)
            d = np.array([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
            frame = np.stack([bc, np.cross(normal, bc), normal], axis=1)
            x.append(c + rng.uniform(0.13, 0.16) * frame @ d)
        frames[f] = np.array(x) + rng.normal(0, 0.002, (5, 3))
    return torch.as_tensor(frames)


#: Five beads in a row, as alanine dipeptide's CG map: φ = 0-1-2-3, ψ = 1-2-3-4.
CHAIN = custom_topology("chain", ["C"] * 5, [12.0] * 5, [(0, 1), (1, 2), (2, 3), (3, 4)])


class NoPriors:
    """A stand-in for the priors: zero energy, so the residual is the data's force itself."""

    def pack(self, topologies):
        return None

    def __call__(self, positions, batch):
        return positions.sum() * 0.0


def synthetic_forces(x: torch.Tensor, c_true: np.ndarray, freq: np.ndarray, stiff_error: float):
    """-∇C(φ, ψ), plus (``stiff_error``) a force along the middle angle's gradient whose size
    depends on φ: a stiff coordinate's error that varies with the conformation."""
    x = x.clone().requires_grad_(True)
    phi, psi = fit.dihedral(x, fit.PHI), fit.dihedral(x, fit.PSI)
    phase = torch.stack([phi, psi], dim=1) @ torch.as_tensor(freq.T, dtype=x.dtype)
    energy = (torch.cat([torch.cos(phase), torch.sin(phase)], dim=1) @ torch.as_tensor(c_true)).sum()
    forces = -torch.autograd.grad(energy, x, retain_graph=True)[0]
    angle_gradient = torch.autograd.grad(fit.stiff_coordinates(x)[5].sum(), x)[0]
    return forces - stiff_error * torch.cos(phi.detach())[:, None, None] * angle_gradient


def test_the_fits_recover_a_known_map_and_only_the_generalized_one_ignores_stiff_errors():
    x = chains(3000, seed=1)
    freq = fit.frequencies(2)
    c_true = np.random.default_rng(2).normal(0, 1.0, 2 * len(freq))
    for stiff_error, cartesian_exact in ((0.0, True), (400.0, False)):
        forces = synthetic_forces(x, c_true, freq, stiff_error).numpy()
        data = fit.projections(NoPriors(), CHAIN, x.numpy(), forces, chunk=1000)
        generalized = fit.fit_generalized(data["angles"], data["generalized"], freq, ridge=0.0)
        cartesian = fit.fit_cartesian(data["angles"], data["metric"], data["projected"], freq, ridge=0.0)
        np.testing.assert_allclose(generalized, c_true, atol=1e-6)
        assert np.allclose(cartesian, c_true, atol=1e-6) == cartesian_exact


def test_the_separable_basis_is_one_fourier_series_per_dihedral():
    separable = fit.frequencies(3, separable=True)
    assert sorted(map(tuple, separable)) == [(0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 0)]
    assert len(fit.frequencies(3)) == (7 * 7 - 1) // 2
