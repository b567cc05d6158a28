"""State populations, their errors and noise floors of the validation's main observable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gnnmd.analysis.states import main_observable, noise_floor, populations, reference_blocks, state_masks


def test_ramachandran_states_follow_their_definitions():
    degrees = np.array([[-60.0, -45.0], [-120.0, 130.0], [-80.0, -150.0], [60.0, 40.0], [0.0, 0.0]])
    masks = state_masks("phi_psi", np.radians(degrees))
    assert masks["alpha_R"].tolist() == [True, False, False, False, False]
    assert masks["beta"].tolist() == [False, True, True, False, False]
    assert masks["alpha_L"].tolist() == [False, False, False, True, True]  # φ ≥ 0, φ = 0 included


def test_folded_is_strict():
    samples = np.array([[0.15, 0.8], [0.15, 0.5], [0.25, 0.9]])  # RMSD nm, Q
    assert state_masks("rmsd_q", samples)["folded"].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="no states defined for observable 'energy'"):
        state_masks("energy", samples)


def test_population_errors_are_standard_errors_over_groups():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 500)
    # Each group (a replica) sits in alpha_L with its own probability: the error must see it.
    own = rng.uniform(0.0, 0.4, size=40)
    phi = np.where(rng.random(groups.size) < own[groups], 1.0, -1.0)
    samples = np.stack([phi, np.full(groups.size, -0.5)], axis=1)
    found = populations("phi_psi", samples, groups)["alpha_L"]
    per_group = np.array([(phi[groups == g] > 0).mean() for g in range(40)])
    assert found["population"] == pytest.approx((phi > 0).mean())
    assert found["error"] == pytest.approx(per_group.std(ddof=1) / math.sqrt(40))
    assert found["error"] > 0.01  # much larger than the naive binomial error over 20,000 frames


def test_reference_blocks_are_contiguous_and_cover_every_frame():
    blocks = reference_blocks(1003, 10)
    assert blocks[0] == 0 and blocks[-1] == 9 and bool((np.diff(blocks) >= 0).all())
    assert sorted(set(blocks.tolist())) == list(range(10))


def test_noise_floor_compares_the_halves():
    samples = np.arange(10.0)[:, None]
    halves = []
    assert noise_floor(samples, lambda a, b: halves.append((a, b)) or 0.25) == 0.25
    first, second = halves[0]
    assert first.ravel().tolist() == [0, 1, 2, 3, 4] and second.ravel().tolist() == [5, 6, 7, 8, 9]


def test_main_observable_prefers_the_protein_map():
    assert main_observable(["bond_0", "phi_psi"]) == "phi_psi"
    assert main_observable(["rmsd_q", "phi_psi", "rmsd_native"]) == "rmsd_q"
    assert main_observable(["bond_0"]) is None


def test_force_gain_error_follows_the_held_out_trajectories():
    from gnnmd.analysis.validate import force_gain

    # Two trajectories whose gains differ by a constant: the frames within each agree, so the
    # blocks of frames alone would understate the error that the trajectories show.
    prior = np.full(40, 10.0)
    model = np.concatenate([np.full(20, 9.0), np.full(20, 7.0)])
    groups = np.repeat([3, 8], 20)
    by_trajectory = force_gain(model, prior, groups)
    assert by_trajectory["standard_error_over"] == "trajectories"
    assert by_trajectory["mse_gain"] == pytest.approx(2.0)
    assert by_trajectory["mse_gain_standard_error"] == pytest.approx(1.0)  # std of (1, 3) / sqrt 2
    by_blocks = force_gain(model, prior)
    assert by_blocks["standard_error_over"] == "contiguous blocks"
    block_gains = [1.0] * 5 + [3.0] * 5
    assert by_blocks["mse_gain_standard_error"] == pytest.approx(np.std(block_gains, ddof=1) / math.sqrt(10))
    one_trajectory = force_gain(model, prior, np.zeros(40))
    assert one_trajectory["standard_error_over"] == "contiguous blocks"


def test_held_out_force_frames_spread_over_every_held_out_trajectory():
    from pathlib import Path
    from types import SimpleNamespace

    from gnnmd.analysis.validate import held_out_frames

    held = list(range(100, 200)) + list(range(500, 600))  # two held-out trajectories
    model = SimpleNamespace(metadata={"training": {"validation_frames": held, "dataset": "/x/data.h5"}})
    dataset = SimpleNamespace(offsets=np.array([0, 1000]), path=Path("/elsewhere/data.h5"))
    frames, kind = held_out_frames(model, dataset, 0, limit=20)
    assert kind == "held-out" and len(frames) == 20
    assert frames.min() == 100 and frames.max() == 599 and (frames >= 500).sum() == 10
