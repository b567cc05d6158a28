"""Protein validation observables on chignolin: CA RMSD to native, native contacts Q, folded fraction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gnnmd.analysis import protein
from gnnmd.analysis.plots import plot_validation
from gnnmd.analysis.protein import (
    ca_indices,
    folded_fraction,
    kabsch_rmsd,
    protein_observables,
    shipped_native,
)
from gnnmd.analysis.validate import ValidationSettings, compare_frames
from gnnmd.data.importers import cgnet_ala2_topology
from gnnmd.systems import load_system


@pytest.fixture(scope="module")
def chignolin():
    return load_system("chignolin")


def rotations(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3, 3) random proper rotations."""
    q, r = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def moved(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames (F, n, 3) rigidly rotated and translated, each its own way."""
    return x @ rotations(len(x), rng) + rng.normal(0, 2.0, (len(x), 1, 3))


def scaled(native: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Frames (F, n, 3): ``native`` scaled about its centroid by each factor."""
    centre = native.mean(axis=0)
    return centre + factors[:, None, None] * (native - centre)


#: mdtraj computes RMSDs in float32 (QCP): agreement to 1e-5 nm at RMSDs of tenths of a nm, and to
#: 5e-4 nm near zero, where the square root amplifies rounding (bins of the RMSD observable: 0.01 nm).
RMSD_TOLERANCE_NM = 1e-5
NEAR_ZERO_TOLERANCE_NM = 5e-4


def kabsch_by_hand(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The definition, in float64: centre, SVD of the covariance, no reflection, RMSD."""
    x = frames - frames.mean(axis=1, keepdims=True)
    y = reference - reference.mean(axis=0)
    u, _, vt = np.linalg.svd(np.einsum("fni,nj->fij", x, y))
    u[:, :, 2] *= np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)[:, None]
    return np.sqrt(((x @ (u @ vt) - y) ** 2).sum(axis=2).mean(axis=1))


def test_rmsd_equals_the_kabsch_definition(chignolin):
    rng = np.random.default_rng(3)
    ca = chignolin.positions_nm[ca_indices(chignolin.topology)]
    frames = moved(ca + rng.normal(0, 0.1, (20, *ca.shape)), rng)
    frames[0] = ca * [-1.0, 1.0, 1.0]  # a mirror image: the reflection must stay out
    np.testing.assert_allclose(kabsch_rmsd(frames, ca), kabsch_by_hand(frames, ca), rtol=0,
                               atol=RMSD_TOLERANCE_NM)  # fmt: skip


def test_rmsd_zero_at_native_and_rigid_motion_invariant(chignolin):
    rng = np.random.default_rng(0)
    ca = chignolin.positions_nm[ca_indices(chignolin.topology)]
    frames = moved(np.repeat(ca[None], 5, axis=0), rng)
    np.testing.assert_allclose(kabsch_rmsd(frames, ca), 0.0, atol=NEAR_ZERO_TOLERANCE_NM)
    noisy = ca + rng.normal(0, 0.05, (4, *ca.shape))
    moved_rmsd, rmsd = kabsch_rmsd(moved(noisy, rng), ca), kabsch_rmsd(noisy, ca)
    np.testing.assert_allclose(moved_rmsd, rmsd, atol=RMSD_TOLERANCE_NM)
    # A mirror image is not superposable: the det(U Vᵀ) < 0 correction must keep its RMSD > 0.
    assert kabsch_rmsd(ca[None] * [-1.0, 1.0, 1.0], ca)[0] > 0.1


def test_rmsd_of_a_scaled_structure_by_hand(chignolin):
    # Scaling by s about the centroid: the best rotation is the identity, so
    # RMSD = |s - 1| * sqrt(mean |x - c|²) (radius of gyration times |s - 1|).
    ca = chignolin.positions_nm[ca_indices(chignolin.topology)]
    radius_of_gyration = math.sqrt(((ca - ca.mean(axis=0)) ** 2).sum(axis=1).mean())
    factors = np.array([0.8, 1.0, 1.25, 2.0])
    frames = moved(scaled(ca, factors), np.random.default_rng(1))
    np.testing.assert_allclose(
        kabsch_rmsd(frames, ca), np.abs(factors - 1) * radius_of_gyration, rtol=0, atol=RMSD_TOLERANCE_NM
    )
    # And a two-bead toy: ends at ±0.5 nm stretched to ±0.6 nm -> RMSD 0.1 nm.
    toy = np.array([[-0.5, 0, 0], [0.5, 0, 0]])
    stretched = np.array([[[0, -0.6, 0], [0, 0.6, 0]]])
    assert kabsch_rmsd(stretched, toy)[0] == pytest.approx(0.1, abs=RMSD_TOLERANCE_NM)


def native_contacts_by_hand(native_ca: np.ndarray) -> list[tuple[int, int, float]]:
    pairs = []
    for i in range(len(native_ca)):
        for j in range(i + 3, len(native_ca)):
            r0 = float(np.linalg.norm(native_ca[j] - native_ca[i]))
            if r0 < 0.8:
                pairs.append((i, j, r0))
    return pairs


def q_of(topology, frames, native) -> np.ndarray:
    observables = {o.name: o for o in protein_observables(topology, frames, native)}
    return observables["native_contacts_q"].samples[:, 0]


def test_native_contacts_q(chignolin):
    topology, native = chignolin.topology, chignolin.positions_nm
    contacts = native_contacts_by_hand(native[ca_indices(topology)])
    assert len(contacts) >= 10
    # At r = r0 each contact is 1 / (1 + exp(β (1 - λ) r0)) = 1 / (1 + exp(-25 r0 / nm)).
    at_native = np.mean([1 / (1 + math.exp(50.0 * (1 - 1.5) * r0)) for _, _, r0 in contacts])
    assert at_native == pytest.approx(1.0, abs=1e-4)
    q = q_of(topology, moved(native[None].repeat(3, axis=0), np.random.default_rng(2)), native)
    np.testing.assert_allclose(q, at_native, rtol=1e-12)
    assert q_of(topology, scaled(native, np.array([2.0])), native)[0] < 1e-3
    straight = np.zeros((1, topology.n_beads, 3))
    straight[0, ca_indices(topology), 0] = 0.38 * np.arange(10)  # a fully extended CA chain
    assert q_of(topology, straight, native)[0] < 0.05
    half = scaled(native, np.array([1.0, 1.5]))  # r = 1.5 r0 exactly: each contact at 1/2
    assert q_of(topology, half, native)[1] == pytest.approx(0.5, abs=1e-12)


def test_folded_fraction_and_observables(chignolin):
    topology, native = chignolin.topology, chignolin.positions_nm
    frames = moved(scaled(native, np.array([1.0, 1.05, 1.0, 2.0, 3.0])), np.random.default_rng(3))
    observables = {o.name: o for o in protein_observables(topology, frames, native)}
    assert set(observables) == {"rmsd_native", "native_contacts_q", "rmsd_q"}
    assert not any(o.periodic for o in observables.values())
    assert observables["rmsd_q"].samples.shape == (5, 2)
    assert observables["rmsd_q"].labels == ("RMSD (nm)", "Q")
    rmsd = observables["rmsd_native"].samples
    assert rmsd[1, 0] < protein.FOLDED_RMSD_NM < rmsd[3, 0]
    assert folded_fraction(rmsd) == pytest.approx(3 / 5)


def test_shipped_native_only_for_matching_proteins(chignolin):
    np.testing.assert_array_equal(shipped_native(chignolin.topology), chignolin.positions_nm)
    ca_model = load_system("chignolin", "ca")
    np.testing.assert_array_equal(shipped_native(ca_model.topology), ca_model.positions_nm)
    assert shipped_native(cgnet_ala2_topology()) is None  # 'ala2' is no shipped system
    with pytest.raises(ValueError, match="CA beads"):
        protein_observables(cgnet_ala2_topology(), np.zeros((2, 5, 3)), np.zeros((5, 3)))


def test_compare_frames_on_synthetic_chignolin(chignolin, tmp_path):
    topology, native = chignolin.topology, chignolin.positions_nm
    rng = np.random.default_rng(4)
    settings = ValidationSettings()
    reference = moved(native + rng.normal(0, 0.01, (400, *native.shape)), rng)
    divergences, pairs, extra = compare_frames(topology, reference, reference, settings)
    assert list(divergences)[:3] == ["rmsd_native", "native_contacts_q", "rmsd_q"]
    assert max(divergences.values()) == pytest.approx(0.0, abs=1e-9)
    assert extra == {"folded_fraction": {"model": 1.0, "reference": 1.0}}
    stretched = moved(scaled(native, np.full(300, 2.0)) + rng.normal(0, 0.01, (300, *native.shape)), rng)
    divergences, pairs, extra = compare_frames(topology, stretched, reference, settings)
    for name in ("rmsd_native", "native_contacts_q", "rmsd_q"):
        assert divergences[name] > 0.6  # near ln 2: the two samplings do not overlap
    assert extra["folded_fraction"] == {"model": 0.0, "reference": 1.0}
    png = plot_validation(pairs[:3], settings, tmp_path / "chignolin.png")
    assert png.stat().st_size > 10_000


def test_alanine_dipeptide_comparison_unchanged(tmp_path):
    topology = cgnet_ala2_topology()
    frames = np.random.default_rng(5).normal(0, 0.2, (50, 5, 3))
    divergences, pairs, extra = compare_frames(topology, frames, frames, ValidationSettings())
    assert extra == {} and "phi_psi" in divergences and "rmsd_native" not in divergences
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # the caller's choice, which drawing a figure must leave alone
    try:
        assert plot_validation(pairs, ValidationSettings(), tmp_path / "ala2.png").is_file()
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)
