"""Distributions, divergences and observables used by validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnnmd.analysis.distributions import PSEUDO_COUNT, free_energy, histogram, jensen_shannon
from gnnmd.analysis.observables import term_observables
from gnnmd.data.importers import cgnet_ala2_topology
from gnnmd.nn.priors.geometry import dihedral_angles, frame_values


def test_jensen_shannon_bounds():
    rng = np.random.default_rng(0)
    p = histogram(rng.normal(size=(5000, 1)), 30, [(-4, 4)])
    assert jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-12)
    left = histogram(rng.uniform(-4, -2, (1000, 1)), 30, [(-4, 4)])
    right = histogram(rng.uniform(2, 4, (1000, 1)), 30, [(-4, 4)])
    assert jensen_shannon(left, right) == pytest.approx(math.log(2), rel=1e-3)
    shifted = histogram(rng.normal(0.5, 1, (5000, 1)), 30, [(-4, 4)])
    assert 0.01 < jensen_shannon(p, shifted) < 0.1
    with pytest.raises(ValueError, match="differ in shape"):
        jensen_shannon(p, histogram(rng.normal(size=(10, 2)), 5, [(-4, 4)] * 2))


def test_jensen_shannon_is_the_divergence_by_its_definition():
    """scipy computes it: ½ KL(p‖m) + ½ KL(q‖m), m = (p + q) / 2, in nats, on smoothed 2-D histograms."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        p = histogram(rng.normal(0, 1, (4000, 2)), 12, [(-4, 4)] * 2)
        q = histogram(rng.normal(rng.uniform(-1, 1), 1.3, (4000, 2)), 12, [(-4, 4)] * 2)
        # PSEUDO_COUNT in every bin keeps empty bins finite
        a = (p + PSEUDO_COUNT) / (p + PSEUDO_COUNT).sum()
        b = (q + PSEUDO_COUNT) / (q + PSEUDO_COUNT).sum()
        m = 0.5 * (a + b)
        expected = 0.5 * np.sum(a * np.log(a / m)) + 0.5 * np.sum(b * np.log(b / m))
        assert jensen_shannon(p, q) == pytest.approx(expected, rel=1e-9)


def test_free_energy_is_boltzmann_inversion():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    energy = free_energy(p, 300.0)
    assert energy[0] == 0.0 and np.isnan(energy[3])
    assert energy[1] == pytest.approx(0.00831446261815324 * 300 * math.log(2))


def test_alanine_dipeptide_observables():
    topology = cgnet_ala2_topology()
    frames = np.random.default_rng(1).normal(0, 0.2, (7, 5, 3))
    observables = {o.name: o for o in term_observables(topology, frames)}
    assert "phi_psi" in observables and observables["phi_psi"].samples.shape == (7, 2)
    assert observables["phi_psi"].periodic
    assert observables["bond ACE.C-ALA.N"].samples.shape == (7, 1)
    assert not observables["bond ACE.C-ALA.N"].periodic
    expected = np.linalg.norm(frames[:, 1] - frames[:, 0], axis=1)
    np.testing.assert_allclose(observables["bond ACE.C-ALA.N"].samples[:, 0], expected)
    assert len([n for n in observables if n.startswith("dihedral")]) == 2


def test_frame_values_chunks_match_frame_by_frame():
    frames = torch.as_tensor(np.random.default_rng(2).normal(0, 0.3, (7, 5, 3)))
    terms = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    chunked = frame_values(frames, terms, dihedral_angles, chunk=3)
    assert chunked.shape == (7, 2)
    for f in range(7):
        one = dihedral_angles(frames[f], terms, torch.zeros(5, dtype=torch.int64))
        torch.testing.assert_close(chunked[f], one, rtol=0, atol=1e-12)


def test_validation_simulation_drops_an_exploding_replica(small_model, chignolin):
    """A replica started with overlapping beads blows up: it is named and dropped, the others go on."""
    from gnnmd.analysis.validate import ValidationSettings, simulate

    native = chignolin.positions_nm
    crushed = native.mean(axis=0) + 0.001 * (native - native.mean(axis=0))  # every bead within 2 pm
    starts = np.stack([native, crushed, native])
    settings = ValidationSettings(replicas=3, steps=40, equilibration_steps=10, record_every=10)
    frames, replicas, failed = simulate(small_model, chignolin.topology, starts, settings)
    assert list(failed) == [1] and "step 10" in failed[1]
    assert frames.shape == (3 * 2, chignolin.topology.n_beads, 3)  # 3 records x 2 healthy replicas
    assert replicas.tolist() == [0, 2] * 3  # each frame names its replica: the dropped one has none
    assert np.isfinite(frames).all() and np.abs(frames).max() < 10.0
