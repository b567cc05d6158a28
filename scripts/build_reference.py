"""Reference data at scale: many independent all-atom runs of one system, merged into one CG dataset.

    python scripts/build_reference.py ala2 [--work out/ala2-reference] [--trajectories 42] [--ns 1]
    python scripts/build_reference.py chignolin [--platform auto] ...

Each trajectory is one `gnnmd data allatom SYSTEM` run (amber14 + GBn2 implicit solvent, 300 K,
2 fs, X-H bonds constrained, bead forces by the "groups" force map of gnnmd.data.allatom) with
its own seed. A run starts cold (from the minimised structure) or hot: it first spends
--start-ps at --start-temperature-k (nothing recorded) from seed-dependent velocities, so runs
start from different conformations (unfolded and intermediate ones for a protein).
--cold-fraction of the runs start cold. Every run is resumable, so re-running this script
continues where it stopped (across sessions); finished runs are skipped. When all are done
(or with --merge-now), the trajectories are merged into WORK/SYSTEM_reference.h5, the first
--equilibration-ps of each dropped, with each frame's trajectory recorded (training holds out
whole trajectories; validation's errors and noise floor and the MSM of
gnnmd.analysis.msm come from them). The data stay out of git (WORK is under out/).

Presets (every option overrides them):

- ala2: 42 x 1 ns, a frame every 0.2 ps, all runs hot (10 ps at 600 K): 205,800 frames after
  20 ps of equilibration each, what the science issue asks for (at least 40 ns and 200,000
  frames). One OpenMM CPU thread per run, two runs at once: about 1.1 minutes per ns each on
  the 2-core machine, under half an hour in all.
- chignolin: 64 x 10 ns, a frame every 1 ps, half the runs cold (folded starts) and half hot
  (1 ns at 450 K: unfolded and intermediate starts). GBn2 chignolin runs about 37 ns/day on
  the 2-core machine, so these 640 ns take about 17 days there: a GPU's job (--platform
  CUDA, about 1 µs/day for 166 atoms).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gnnmd.data.dataset import ForceDataset, write_molecule

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    "ala2": dict(trajectories=42, ns=1.0, frame_interval_ps=0.2, start_temperature_k=600.0, start_ps=10.0,
                 cold_fraction=0.0, equilibration_ps=20.0),
    "chignolin": dict(trajectories=64, ns=10.0, frame_interval_ps=1.0, start_temperature_k=450.0,
                      start_ps=1000.0, cold_fraction=0.5, equilibration_ps=100.0),
}  # fmt: skip


def trajectory_path(work: Path, index: int) -> Path:
    return work / f"trajectory_{index:03d}.h5"


def is_cold(index: int, count: int, cold_fraction: float) -> bool:
    """Whether run ``index`` starts cold: the first round(cold_fraction × count) runs do."""
    return index < int(round(cold_fraction * count))


def run_trajectory(args: argparse.Namespace, index: int) -> None:
    """One run in its own process, on one OpenMM CPU thread: for small systems two threads spend their
    time handing steps to each other, and runs made one after another in one process slowed down
    several-fold (measured on ala2: 1 ns in 1.1 min in a fresh process, 8 min as the 31st in one)."""
    start = [] if is_cold(index, args.trajectories, args.cold_fraction) else [
        "--start-temperature-k", str(args.start_temperature_k), "--start-ps", str(args.start_ps)]  # fmt: skip
    argv = [sys.executable, "-m", "gnnmd.cli", "data", "allatom", args.system, "--ns", str(args.ns),
            "--frame-interval-ps", str(args.frame_interval_ps), "--seed", str(args.seed_base + index),
            "--platform", args.platform, *start, "-o", str(trajectory_path(args.work, index))]  # fmt: skip
    log = trajectory_path(args.work, index).with_suffix(".log")
    with log.open("a") as handle:
        done = subprocess.run(
            argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "OPENMM_CPU_THREADS": "1"}
        )
    if done.returncode != 0:
        raise SystemExit(f"trajectory {index} failed (see {log})")


def merge(args: argparse.Namespace) -> Path:
    """One dataset of every finished trajectory's frames after equilibration, trajectories recorded."""
    output = args.work / f"{args.system}_reference.h5"
    skip = int(round(args.equilibration_ps / args.frame_interval_ps))
    coordinates, forces, trajectories, topology = [], [], [], None
    for index in range(args.trajectories):
        path = trajectory_path(args.work, index)
        if not path.is_file():
            continue
        data = ForceDataset(path)
        topology = data.topologies[0]
        if len(data) <= skip:
            continue
        x, f = data.frames(0, range(skip, len(data)))
        coordinates.append(x)
        forces.append(f)
        trajectories += [index] * len(x)
    if topology is None:
        raise SystemExit("no trajectory has frames past the equilibration yet")
    cold = sum(is_cold(i, args.trajectories, args.cold_fraction) for i in set(trajectories))
    output.unlink(missing_ok=True)
    write_molecule(
        output, topology, np.concatenate(coordinates), np.concatenate(forces),
        description=f"{args.system}, amber14/GBn2, 300 K, {len(set(trajectories))} independent trajectories "
        f"({cold} cold starts, the others after {args.start_ps} ps at {args.start_temperature_k} K), first "
        f"{args.equilibration_ps} ps of each dropped, groups force map; scripts/build_reference.py",
        trajectories=np.asarray(trajectories, dtype=np.int32),
    )  # fmt: skip
    print(f"wrote {output}: {len(trajectories)} frames of {len(set(trajectories))} trajectories")
    return output


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "system", choices=sorted(PRESETS), help="shipped system (its preset sets the defaults)"
    )
    parser.add_argument(
        "--work", type=Path, help="folder of the runs and the merged file (out/SYSTEM-reference)"
    )
    parser.add_argument("--trajectories", type=int, help="independent runs")
    parser.add_argument("--ns", type=float, help="recorded time per run, ns")
    parser.add_argument("--frame-interval-ps", type=float, help="time between frames, ps")
    parser.add_argument("--start-temperature-k", type=float, help="hot starts: temperature, K")
    parser.add_argument("--start-ps", type=float, help="hot starts: time at that temperature, ps")
    parser.add_argument("--cold-fraction", type=float, help="share of runs started cold (the first ones)")
    parser.add_argument("--equilibration-ps", type=float, help="dropped per run at merge")
    parser.add_argument("--seed-base", type=int, default=1000, help="run i uses seed base + i (1000)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform: CPU (default), CUDA, auto")
    parser.add_argument("--processes", type=int, default=2, help="runs at once, one CPU each (2)")
    parser.add_argument("--merge-now", action="store_true", help="merge what is finished and stop")
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.system].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.work is None:
        args.work = REPO / "out" / f"{args.system}-reference"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.merge_now:
        with ThreadPoolExecutor(args.processes) as pool:
            runs = [pool.submit(run_trajectory, args, i) for i in range(args.trajectories)]
            for run in runs:
                run.result()
    merge(args)


if __name__ == "__main__":
    sys.exit(main())
