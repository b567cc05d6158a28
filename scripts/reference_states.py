"""A reference dataset's state populations: frame counts and a Markov state model, with errors.

    python scripts/reference_states.py out/ala2-reference/ala2_reference.h5 [--frame-ps 0.2]
        [--lag-ps 2] [--clusters 50] [--bootstrap 50] [--json OUT.json]

For each molecule of a dataset that records its frames' trajectories (``scripts/build_reference.py``
writes such files), the main observable's states (:mod:`gnnmd.analysis.states`: α_R, β, α_L for
φ/ψ): the fraction of frames in each with its standard error over trajectories, and the MSM
estimate of :mod:`gnnmd.analysis.msm` with its bootstrap error over trajectories and the implied
timescales. Frames are taken in dataset order within each trajectory (the order they were written).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gnnmd.analysis.msm import MSMSettings, msm_populations
from gnnmd.analysis.observables import term_observables
from gnnmd.analysis.states import populations
from gnnmd.data.dataset import ForceDataset


def molecule_states(dataset: ForceDataset, index: int, frame_ps: float, settings: MSMSettings) -> dict:
    """Counted and MSM populations of one molecule's φ/ψ states."""
    ids = dataset.trajectory_ids[index]
    if ids is None:
        raise SystemExit(f"{dataset.path}: molecule {dataset.molecules[index]!r} records no trajectories")
    coordinates, _ = dataset.frames(index)
    observables = {o.name: o for o in term_observables(dataset.topologies[index], coordinates)}
    if "phi_psi" not in observables:
        raise SystemExit(f"{dataset.path}: molecule {dataset.molecules[index]!r} has no φ/ψ pair")
    samples = observables["phi_psi"].samples
    trajectories = [samples[ids == label] for label in np.unique(ids)]
    return {
        "frames": int(len(samples)),
        "trajectories": len(trajectories),
        "counted": populations("phi_psi", samples, ids),
        "msm": msm_populations("phi_psi", trajectories, frame_ps, settings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("--frame-ps", type=float, default=0.2, help="time between frames, ps (0.2)")
    parser.add_argument("--lag-ps", type=float, default=2.0, help="MSM lag time, ps (2)")
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--bootstrap", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lag_frames = max(1, round(args.lag_ps / args.frame_ps))
    settings = MSMSettings(args.clusters, lag_frames, bootstrap=args.bootstrap)
    dataset = ForceDataset(args.reference)
    report = {
        name: molecule_states(dataset, i, args.frame_ps, settings) for i, name in enumerate(dataset.molecules)
    }
    for name, states in report.items():
        print(f"{name}: {states['frames']} frames of {states['trajectories']} trajectories")
        msm = states["msm"]
        for state, counted in states["counted"].items():
            estimate = msm["populations"][state]
            print(f"  {state:8s} counted {counted['population']:.4f} ± {counted['error']:.4f}   "
                  f"MSM {estimate['population']:.4f} ± {estimate['error']:.4f}")  # fmt: skip
        slowest = [round(t) for t in msm["timescales_ps"]]
        doubled = [round(t) for t in msm["timescales_ps_double_lag"]]
        print(f"  MSM lag {msm['lag_ps']:g} ps, slowest timescales {slowest} ps (twice the lag: {doubled})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
