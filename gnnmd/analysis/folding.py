"""Folding in a protein validation: where replicas start, what fraction ends up folded, transitions.

A replica that stays where it starts reports its start, not the model's equilibrium. So a
protein is simulated from two start sets, folded and unfolded reference frames (half of the
replicas each, when the reference has both), and the folded fraction is reported for each
set separately. They agree only when the runs are long enough to forget their starts.

Transitions are counted between cores, so that a frame wobbling across one line is not a
transition: the folded core is the strict folded state (CA RMSD < 0.2 nm and Q > 0.7,
:mod:`gnnmd.analysis.states`), the unfolded core is Q < :data:`UNFOLDED_CORE_Q`. A replica's
state is the last core it visited; each change of it is a folding or an unfolding event.
"""

from __future__ import annotations

import numpy as np

from gnnmd.analysis.states import standard_error, state_masks
from gnnmd.data.dataset import spread_indices

#: Below this fraction of native contacts a frame is in the unfolded core.
UNFOLDED_CORE_Q = 0.4
#: Folded fractions from the two start sets that differ by more than this do not agree.
AGREEMENT_TOLERANCE = 0.1
CORE_DEFINITIONS = {
    "folded_core": "CA RMSD < 0.2 nm and Q > 0.7 (the folded state)",
    "unfolded_core": f"Q < {UNFOLDED_CORE_Q}",
    "transition": "a change of the last core visited, per replica",
}


def is_folded(samples: np.ndarray) -> np.ndarray:
    """(F,) bool: frames (F, 2) of (CA RMSD nm, Q) in the folded state."""
    return state_masks("rmsd_q", samples)["folded"]


def choose_starts(samples: np.ndarray, replicas: int) -> np.ndarray:
    """(replicas,) indices of reference frames to start from: half folded, half not, each spread
    evenly over its frames, when the reference (F, 2) of (RMSD, Q) has both; else spread over all."""
    mask = is_folded(samples)
    folded, unfolded = np.flatnonzero(mask), np.flatnonzero(~mask)
    if len(folded) == 0 or len(unfolded) == 0 or replicas < 2:
        return spread_indices(len(samples), replicas)
    half = replicas // 2
    pick = [
        s[spread_indices(len(s), n)]
        for s, n in ((folded, half), (unfolded, replicas - half))
    ]
    return np.concatenate(pick)


def count_transitions(samples: np.ndarray) -> tuple[int, int]:
    """(folding, unfolding) events in one replica's time series (F, 2) of (RMSD, Q)."""
    core = np.where(is_folded(samples), 1, np.where(samples[:, 1] < UNFOLDED_CORE_Q, 0, -1))
    visited = core[core >= 0]
    if len(visited) < 2:
        return 0, 0
    changes = np.diff(visited)
    return int((changes > 0).sum()), int((changes < 0).sum())


def folding_report(samples: np.ndarray, replicas: np.ndarray, start_folded: np.ndarray) -> dict:
    """Folded fraction per start set, with errors over replicas, and core-to-core transitions.

    Args:
        samples: (F, 2) (CA RMSD nm, Q) of the simulated frames, in time order per replica.
        replicas: (F,) the replica of each frame.
        start_folded: (R,) whether replica r started from a folded reference frame.
    """
    folded = is_folded(samples).astype(np.float64)
    out: dict = {"definitions": CORE_DEFINITIONS}
    fractions = {}
    for label, wanted in (("from_folded_starts", True), ("from_unfolded_starts", False)):
        started = np.flatnonzero(start_folded == wanted)
        if len(started) == 0:
            out[label] = None
            continue
        chosen = np.isin(replicas, started)
        out[label] = {
            "replicas": int(len(started)),
            "replicas_with_frames": int(len(np.unique(replicas[chosen]))),
        }
        error = None
        if chosen.any():  # else every replica of the set failed before its first frame
            fractions[label] = float(folded[chosen].mean())
            error = standard_error(folded[chosen], replicas[chosen])
        out[label]["folded_fraction"] = fractions.get(label)
        out[label]["error"] = error
    folding = unfolding = 0
    for replica in np.unique(replicas):
        events = count_transitions(samples[replicas == replica])
        folding, unfolding = folding + events[0], unfolding + events[1]
    out["transitions"] = {"folding": folding, "unfolding": unfolding}
    if len(fractions) == 2:
        difference = abs(fractions["from_folded_starts"] - fractions["from_unfolded_starts"])
        out["start_set_difference"] = difference
        out["start_sets_agree"] = bool(difference <= AGREEMENT_TOLERANCE)
        if difference > AGREEMENT_TOLERANCE:
            out["note"] = (
                f"the start sets disagree by {difference:.2f} (> {AGREEMENT_TOLERANCE}): the runs are too "
                "short to forget their starts, so neither folded fraction is the model's equilibrium"
            )
    else:
        out["start_sets_agree"] = None
        out["note"] = (
            "one start set only (the reference has no folded or no unfolded frame, "
            "or a set's replicas failed)"
        )
    return out
