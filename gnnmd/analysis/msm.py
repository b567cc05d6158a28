"""Equilibrium state populations of a reference from many short trajectories: a Markov state model.

Counting frames gives equilibrium populations only when every trajectory has forgotten its
start. Short runs started in chosen states (folded, unfolded, hot-start structures) have not,
so the counts reflect where they started. A Markov state model (MSM) corrects for it: the
frames are clustered (k-means on the observable's features), transitions between clusters
are counted at a lag time over all trajectories, and the stationary distribution of the
reversible maximum-likelihood transition matrix weighs the clusters. A state's population is
Σ_c π_c · (share of cluster c's frames in the state). Its error is the spread over bootstrap
resamples of whole trajectories (clustering kept, counts and MSM refitted).

Built on deeptime (KMeans, TransitionCountEstimator, MaximumLikelihoodMSM). Features: for
φ/ψ their cos and sin (periodic); for RMSD × Q the two values. Only the largest connected set
of clusters enters the MSM; the report gives the share of frames in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gnnmd.analysis.states import state_masks


@dataclass(frozen=True)
class MSMSettings:
    """Clusters, lag time (in frames of the trajectories), implied timescales reported, bootstrap."""

    clusters: int = 50
    lag_frames: int = 10
    timescales: int = 3
    bootstrap: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clusters < 2 or self.lag_frames < 1 or self.bootstrap < 2:
            raise ValueError(
                f"clusters ({self.clusters}) must be >= 2, lag_frames ({self.lag_frames}) >= 1 and "
                f"bootstrap ({self.bootstrap}) >= 2"
            )


def features(observable: str, samples: np.ndarray) -> np.ndarray:
    """(F, d) clustering features of an observable's samples (F, 2): φ/ψ as cos, sin (radians)."""
    if observable == "phi_psi":
        return np.concatenate([np.cos(samples), np.sin(samples)], axis=1)
    return np.asarray(samples, dtype=np.float64)


def _fit(discrete: list[np.ndarray], lag: int, clusters: int):
    """The reversible MSM of discrete trajectories on the largest connected set, or None."""
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    usable = [d for d in discrete if len(d) > lag]
    if not usable:
        return None
    counts = TransitionCountEstimator(lagtime=lag, count_mode="sliding", n_states=clusters).fit(usable)
    return MaximumLikelihoodMSM(reversible=True).fit(counts.fetch_model().submodel_largest()).fetch_model()


def _populations(msm, shares: np.ndarray) -> np.ndarray:
    """(S,) macro-state populations from the MSM's stationary distribution over its active set."""
    active = msm.count_model.state_symbols
    weights = shares[active]
    weights = weights / weights.sum(axis=1, keepdims=True)
    return msm.stationary_distribution @ weights


def msm_populations(
    observable: str, trajectories: list[np.ndarray], frame_ps: float, settings: MSMSettings = MSMSettings()
) -> dict:
    """MSM estimate of the equilibrium populations of ``observable``'s states.

    Args:
        observable: "phi_psi" or "rmsd_q" (:mod:`gnnmd.analysis.states`).
        trajectories: per independent trajectory, its samples (F_i, 2) in time order.
        frame_ps: time between frames, ps.
        settings: clusters, lag, bootstrap.

    Returns:
        {"populations": {state: {"population", "error"}}, "counted": {state: fraction of frames},
        "lag_ps", "clusters", "active_fraction", "timescales_ps" (at the lag) and
        "timescales_ps_double_lag" (at twice the lag: about equal when the model is Markovian),
        "trajectories"}.
    """
    from deeptime.clustering import KMeans

    if len(trajectories) < 2:
        raise ValueError(f"an MSM error needs at least 2 independent trajectories, got {len(trajectories)}")
    samples = np.concatenate(trajectories)
    masks = state_masks(observable, samples)
    names = list(masks)
    points = features(observable, samples)
    # deeptime reads fixed_seed=0 as False (a time-based seed): shift it to stay reproducible.
    kmeans = KMeans(settings.clusters, max_iter=100, fixed_seed=settings.seed + 1, n_jobs=1)
    kmeans = kmeans.fit(points).fetch_model()
    labels = kmeans.transform(points)
    shares = np.zeros((settings.clusters, len(names)))
    for column, name in enumerate(names):
        np.add.at(shares[:, column], labels[masks[name]], 1.0)
    shares[shares.sum(axis=1) == 0] = 1.0  # empty clusters: never active; avoids 0/0
    bounds = np.cumsum([0] + [len(t) for t in trajectories])
    discrete = [labels[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    msm = _fit(discrete, settings.lag_frames, settings.clusters)
    if msm is None:
        raise ValueError(f"every trajectory is shorter than the lag ({settings.lag_frames} frames)")
    estimate = _populations(msm, shares)
    rng = np.random.default_rng(settings.seed)
    resamples = []
    for _ in range(settings.bootstrap):
        chosen = rng.integers(0, len(discrete), len(discrete))
        resampled = _fit([discrete[i] for i in chosen], settings.lag_frames, settings.clusters)
        if resampled is not None:
            resamples.append(_populations(resampled, shares))
    errors = np.std(resamples, axis=0, ddof=1)
    doubled = _fit(discrete, 2 * settings.lag_frames, settings.clusters)
    active = np.isin(labels, msm.count_model.state_symbols)
    return {
        "populations": {
            name: {"population": float(estimate[i]), "error": float(errors[i])}
            for i, name in enumerate(names)
        },
        "counted": {name: float(mask.mean()) for name, mask in masks.items()},
        "lag_ps": settings.lag_frames * frame_ps,
        "clusters": settings.clusters,
        "active_fraction": float(active.mean()),
        "timescales_ps": [float(t) * frame_ps for t in msm.timescales(settings.timescales)],
        "timescales_ps_double_lag": [float(t) * frame_ps for t in doubled.timescales(settings.timescales)],
        "trajectories": len(trajectories),
    }
