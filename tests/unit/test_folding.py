"""Protein validation by start set: folded fractions from folded and unfolded starts, core-to-core
transitions, and half of the replicas started from each kind of reference frame."""

from __future__ import annotations

import numpy as np
import pytest

from gnnmd.analysis.folding import choose_starts, count_transitions, folding_report
from gnnmd.analysis.validate import choose_starts as choose_start_frames
from gnnmd.analysis.validate import observables_of
from gnnmd.systems import load_system

FOLDED, UNFOLDED, BETWEEN = (0.1, 0.9), (0.6, 0.2), (0.3, 0.55)  # (CA RMSD nm, Q)


def series(*points) -> np.ndarray:
    return np.array(points, dtype=np.float64)


def test_transitions_are_counted_between_cores():
    # folded -> between -> folded is no transition; folded -> unfolded -> folded is two.
    assert count_transitions(series(FOLDED, BETWEEN, FOLDED, BETWEEN)) == (0, 0)
    assert count_transitions(series(FOLDED, BETWEEN, UNFOLDED, BETWEEN, FOLDED)) == (1, 1)
    assert count_transitions(series(BETWEEN, UNFOLDED, UNFOLDED, FOLDED, UNFOLDED, FOLDED)) == (2, 1)
    assert count_transitions(series(BETWEEN)) == (0, 0)


def test_report_separates_the_start_sets_and_says_when_they_disagree():
    # Replicas 0, 1 start folded and stay; 2 starts unfolded and folds half-way; 3 stays unfolded.
    runs = [[FOLDED] * 4, [FOLDED] * 4, [UNFOLDED] * 2 + [FOLDED] * 2, [UNFOLDED] * 4]
    samples = np.concatenate([series(*run) for run in runs])
    replicas = np.repeat(np.arange(4), 4)
    report = folding_report(samples, replicas, np.array([True, True, False, False]))
    assert report["from_folded_starts"] == {"replicas": 2, "replicas_with_frames": 2, "folded_fraction": 1.0,
                                            "error": 0.0}  # fmt: skip
    unfolded = report["from_unfolded_starts"]
    assert unfolded["folded_fraction"] == pytest.approx(0.25) and unfolded["error"] == pytest.approx(0.25)
    assert report["transitions"] == {"folding": 1, "unfolding": 0}
    assert report["start_set_difference"] == pytest.approx(0.75) and report["start_sets_agree"] is False
    assert "too short to forget their starts" in report["note"]
    agreeing = folding_report(samples[:8], replicas[:8], np.array([True, False]))
    assert agreeing["start_sets_agree"] is True and "note" not in agreeing
    one_set = folding_report(samples[:8], replicas[:8], np.array([True, True]))
    assert one_set["from_unfolded_starts"] is None and one_set["start_sets_agree"] is None
    # A set whose replicas all failed before their first frame is reported, without a fraction.
    failed = folding_report(samples[:8], replicas[:8], np.array([True, True, False]))
    expected = {"replicas": 1, "replicas_with_frames": 0, "folded_fraction": None, "error": None}
    assert failed["from_unfolded_starts"] == expected
    assert failed["start_sets_agree"] is None and "replicas failed" in failed["note"]


def test_half_the_replicas_start_folded_when_the_reference_has_both():
    samples = np.concatenate([np.tile(FOLDED, (30, 1)), np.tile(UNFOLDED, (10, 1))])
    chosen = choose_starts(samples, 8)
    assert sorted(chosen[:4]) == list(chosen[:4]) and (chosen[:4] < 30).all() and (chosen[4:] >= 30).all()
    all_folded = choose_starts(samples[:30], 8)
    assert all_folded.tolist() == np.linspace(0, 29, 8).astype(int).tolist()


def test_protein_validation_starts_from_both_kinds_of_reference_frame():
    chignolin = load_system("chignolin")
    native = chignolin.positions_nm
    centre = native.mean(axis=0)
    rng = np.random.default_rng(0)
    folded = native + rng.normal(0, 0.01, (6, *native.shape))
    swollen = centre + 2.0 * (native - centre) + rng.normal(0, 0.01, (6, *native.shape))
    frames = np.concatenate([folded, swollen])
    starts, start_folded = choose_start_frames(frames, observables_of(chignolin.topology, frames, native), 4)
    assert start_folded.tolist() == [True, True, False, False]
    ala2_like, none = choose_start_frames(folded, observables_of(chignolin.topology, folded, None), 3)
    assert none is None and len(ala2_like) == 3


def test_protein_validation_reports_folding_by_start_set(tmp_path):
    from gnnmd.analysis.validate import ValidationSettings, validate
    from gnnmd.data.dataset import ForceDataset, write_molecule
    from gnnmd.models import untrained_model
    from tests.conftest import SMALL_CONFIG

    chignolin = load_system("chignolin")
    native = chignolin.positions_nm
    rng = np.random.default_rng(1)
    folded = native + rng.normal(0, 0.01, (10, *native.shape))
    model = untrained_model(SMALL_CONFIG, [(chignolin.topology, native)], seed=0)
    # Not folded: the mirror image has every bond, angle and distance (so Q) of the native
    # structure, and an RMSD to it far above 0.2 nm.
    unfolded = folded * np.array([-1.0, 1.0, 1.0])
    frames = np.concatenate([folded, unfolded])
    write_molecule(tmp_path / "c.h5", chignolin.topology, frames, rng.normal(0, 50, frames.shape))
    settings = ValidationSettings(
        replicas=4, steps=60, equilibration_steps=20, record_every=10, force_frames=4
    )
    report = validate(model, ForceDataset(tmp_path / "c.h5"), settings)["molecules"]["chignolin"]
    assert report["main_observable"] == "rmsd_q"
    folding = report["folding"]
    assert folding["from_folded_starts"]["replicas"] == 2 and folding["from_unfolded_starts"]["replicas"] == 2
    assert (
        set(folding["transitions"]) == {"folding", "unfolding"} and "unfolded_core" in folding["definitions"]
    )
    assert (
        folding["from_unfolded_starts"]["replicas_with_frames"] == 2 and folding["start_set_difference"] > 0.5
    )
    assert folding["start_sets_agree"] is False  # 80 fs cannot forget where the replicas started
