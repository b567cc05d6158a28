"""Simulate replicas of two different proteins in one batch and write their CG trajectories.

    python examples/replicas.py [--steps 500] [--out out/replicas]

Each replica is stepped by the batched BAOAB runner (one model call per step
for all of them); frames are written as DCD with the CG topology, readable by
mdtraj. Units: nm, ps, K. The shipped default model is untrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mdtraj
import numpy as np

from gnnmd.models import load_model
from gnnmd.sim import LangevinSettings, ReplicaRunner
from gnnmd.systems import load_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="BAOAB steps of 4 fs (default: 500)")
    parser.add_argument("--every", type=int, default=50, help="steps between frames (default: 50)")
    parser.add_argument("--out", type=Path, default=Path("out/replicas"), help="output folder")
    args = parser.parse_args(argv)

    systems = [load_system("chignolin"), load_system("chignolin"), load_system("villin")]
    positions = np.concatenate([s.positions_nm for s in systems])
    topologies = [s.topology for s in systems]
    runner = ReplicaRunner(load_model("default"), topologies, positions, LangevinSettings(4.0), seed=1)
    frames: list[list[np.ndarray]] = [[] for _ in systems]
    for _ in range(args.steps // args.every):
        runner.step(args.every)
        runner.check_finite()
        coordinates = runner.positions.detach().cpu().numpy()
        bounds = runner.batch.ptr.tolist()
        for replica in range(len(systems)):
            frames[replica].append(coordinates[bounds[replica] : bounds[replica + 1]])

    args.out.mkdir(parents=True, exist_ok=True)
    for replica, system in enumerate(systems):
        trajectory = mdtraj.Trajectory(np.stack(frames[replica]), system.topology.to_mdtraj())
        path = args.out / f"replica{replica}_{system.name}.dcd"
        trajectory.save_dcd(str(path))
        print(f"{path}: {trajectory.n_frames} frames of {trajectory.n_atoms} beads")
    print("temperatures (K):", [round(float(t)) for t in runner.temperatures_k()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
