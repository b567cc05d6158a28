"""Iterative Boltzmann inversion of dihedral priors: the update's arithmetic, its convergence on a
coupled toy, and the refinement loop with its saved tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.analysis.distributions import histogram, jensen_shannon
from gnnmd.errors import TrainingError
from gnnmd.nn.priors.fit import fourier_energy
from gnnmd.nn.priors.ibi import corrected_dihedral
from gnnmd.train import Trainer
from gnnmd.train.prior_refinement import RefinementSettings, refine_dihedral_priors
from tests.conftest import perturbed
from tests.unit.test_training import CONFIG, student, teacher_dataset

KT = 2.494  # kJ/mol at 300 K
GRID = np.linspace(-np.pi, np.pi, 4001)[:-1]


def sample(energy: np.ndarray, count: int = 400_000, seed: int = 0) -> np.ndarray:
    """``count`` angles drawn from exp(-energy(GRID)/kT) by inverse transform."""
    weights = np.exp(-(energy - energy.min()) / KT)
    cdf = np.cumsum(weights) / weights.sum()
    return GRID[np.searchsorted(cdf, np.random.default_rng(seed).random(count))]


def divergence(a: np.ndarray, b: np.ndarray) -> float:
    value_range = [(-np.pi, np.pi)]
    return jensen_shannon(histogram(a[:, None], 60, value_range), histogram(b[:, None], 60, value_range))


def test_no_correction_where_the_simulation_matches_the_data():
    cos, sin = np.array([1.5, -0.7, 0.2]), np.array([0.4, 0.9, -0.3])
    samples = sample(fourier_energy(GRID, cos, sin))
    new_cos, new_sin = corrected_dihedral(cos, sin, samples, samples, KT)
    np.testing.assert_allclose(new_cos, cos, atol=1e-9)
    np.testing.assert_allclose(new_sin, sin, atol=1e-9)


def test_iterations_undo_a_coupling_the_prior_does_not_see():
    """The data follow U(φ); the 'simulation' of a prior P follows P + V, V standing for what the
    other coordinates add. Boltzmann inversion gives P = U (wrong by V); IBI converges to U - V."""
    true_cos, true_sin = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.8, 0.0])
    coupling = 1.2 * KT * np.cos(GRID - 0.7)
    reference = sample(fourier_energy(GRID, true_cos, true_sin), seed=1)
    cos, sin = true_cos.copy(), true_sin.copy()
    errors = []
    for iteration in range(4):
        simulated = sample(fourier_energy(GRID, cos, sin) + coupling, seed=10 + iteration)
        errors.append(divergence(reference, simulated))
        cos, sin = corrected_dihedral(cos, sin, reference, simulated, KT)
    final = divergence(reference, sample(fourier_energy(GRID, cos, sin) + coupling, seed=99))
    assert errors[0] > 0.03  # the coupling matters
    assert final < 1e-3 and final < errors[0] / 50
    expected = fourier_energy(GRID, true_cos, true_sin) - coupling
    got = fourier_energy(GRID, cos, sin)
    assert np.abs((got - got.mean()) - (expected - expected.mean())).max() < 0.15 * KT


def test_damping_and_settings_refusals():
    cos, sin = np.array([1.0, 0.0, 0.0]), np.zeros(3)
    reference = sample(fourier_energy(GRID, cos, sin))
    simulated = sample(fourier_energy(GRID, cos, sin) + KT * np.cos(GRID))
    full = corrected_dihedral(cos, sin, reference, simulated, KT, damping=1.0)
    half = corrected_dihedral(cos, sin, reference, simulated, KT, damping=0.5)
    np.testing.assert_allclose(half[0] - cos, 0.5 * (full[0] - cos), atol=0.02)
    with pytest.raises(ValueError, match="damping"):
        RefinementSettings(damping=0.0)
    with pytest.raises(ValueError, match="iterations"):
        RefinementSettings(iterations=0)


def test_refinement_changes_only_dihedrals(small_model, chignolin, one_thread):
    frames = np.stack([perturbed(chignolin.positions_nm, 0.01, seed).numpy() for seed in range(40)])
    model = small_model
    before = {name: table.clone() for name, table in model.priors.tables()["bonds"].items()}
    dihedrals = model.priors.dihedrals.cos_coefficients.clone()
    settings = RefinementSettings(iterations=2, replicas=4, steps=60)
    history = refine_dihedral_priors(model, [(chignolin.topology, frames)], 300.0, settings)
    assert len(history) == 2 and all(len(step) > 0 for step in history)
    assert not torch.equal(model.priors.dihedrals.cos_coefficients, dihedrals)
    for name, table in model.priors.tables()["bonds"].items():
        assert torch.equal(table, before[name])


def test_a_prepare_step_is_refused_under_several_processes(tmp_path, chignolin):
    """A run's one-time preparation (the refinement of its priors) would run on every rank: refused,
    with the way round it; nothing of the run is written."""
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    prepared = []
    trainer = Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "run", prepare=prepared.append)
    trainer.world = 2  # as under torchrun with two ranks
    with pytest.raises(TrainingError, match="without torchrun"):
        trainer.run()
    assert prepared == [] and not (tmp_path / "run" / "train_state.pt").exists()
