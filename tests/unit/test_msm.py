"""The MSM estimate of equilibrium populations recovers a known chain's, where counting frames
of short runs from biased starts does not."""

from __future__ import annotations

import numpy as np
import pytest

from gnnmd.analysis.msm import MSMSettings, features, msm_populations

#: A 3-state chain: folded (0) and two unfolded states; stationary distribution below.
TRANSITIONS = np.array([[0.97, 0.03, 0.00], [0.01, 0.95, 0.04], [0.00, 0.02, 0.98]])
#: Each state's (CA RMSD nm, Q) centre: state 0 is folded by the strict definition.
CENTRES = np.array([[0.1, 0.9], [0.45, 0.4], [0.7, 0.2]])


def stationary() -> np.ndarray:
    values, vectors = np.linalg.eig(TRANSITIONS.T)
    pi = np.real(vectors[:, np.argmax(np.real(values))])
    return pi / pi.sum()


def runs(count: int, length: int, start: int, seed: int) -> list[np.ndarray]:
    """Trajectories of (RMSD, Q) samples, every one started in state ``start``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        states = [start]
        for _ in range(length - 1):
            states.append(rng.choice(3, p=TRANSITIONS[states[-1]]))
        out.append(CENTRES[states] + rng.normal(0, 0.02, (length, 2)))
    return out


def test_msm_recovers_the_equilibrium_that_biased_starts_hide():
    folded = stationary()[0]
    trajectories = runs(60, 150, start=0, seed=1)  # every run starts folded, few relax fully
    report = msm_populations(
        "rmsd_q", trajectories, frame_ps=10.0, settings=MSMSettings(clusters=12, lag_frames=5)
    )
    estimate = report["populations"]["folded"]
    assert report["counted"]["folded"] > folded + 0.1  # counting remembers the starts
    assert abs(estimate["population"] - folded) < max(3 * estimate["error"], 0.03), (estimate, folded)
    assert 0 < estimate["error"] < 0.1
    assert report["populations"]["unfolded"]["population"] == pytest.approx(1 - estimate["population"])
    assert report["active_fraction"] == 1.0 and report["trajectories"] == 60 and report["lag_ps"] == 50.0
    slowest = -10.0 / np.log(np.sort(np.abs(np.linalg.eigvals(TRANSITIONS)))[-2])  # ps
    assert report["timescales_ps"][0] == pytest.approx(slowest, rel=0.3)


def test_msm_inputs_are_checked():
    with pytest.raises(ValueError, match="at least 2 independent trajectories"):
        msm_populations("rmsd_q", runs(1, 50, 0, 0), 1.0)
    with pytest.raises(ValueError, match="shorter than the lag"):
        msm_populations("rmsd_q", runs(3, 5, 0, 0), 1.0, MSMSettings(clusters=4, lag_frames=10))
    with pytest.raises(ValueError, match="lag_frames"):
        MSMSettings(lag_frames=0)
    angles = np.array([[np.pi, -np.pi]])
    np.testing.assert_allclose(features("phi_psi", angles), [[-1.0, -1.0, 0.0, 0.0]], atol=1e-12)  # periodic
