"""Scale-out of ``gnnmd train`` under torchrun: seconds per epoch for P processes × T threads.

    python benchmarks/train_scaling.py DATA.h5 --layouts 1x2,2x1 --epochs 2 --json out/train_scaling.json

Every layout trains the same model on the same data with the same global batch
(``--batch-size`` frames per step, split over the processes), from a fresh
output folder. One process runs plainly; more run under ``torchrun
--nproc-per-node P`` (gloo on CPU). The report is the mean epoch time from each
run's metrics.csv after the first epoch (which includes start-up), and the
final validation force RMSE, which must agree between layouts because the
gradients do (the test suite checks them to 1e-9).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="gnnmd dataset (.h5)")
    parser.add_argument("--layouts", default="1x2,2x1", help="PROCESSESxTHREADS, comma-separated")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model-config", default="default")
    parser.add_argument("--temperature-k", type=float, default=340.0)
    parser.add_argument("--max-frames", type=int, help="train on a random subset of this many frames")
    parser.add_argument("--work", type=Path, default=Path("out/train_scaling"))
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    rows = [run(args, *(int(n) for n in layout.split("x"))) for layout in args.layouts.split(",")]
    report = {"data": str(args.data), "epochs": args.epochs, "batch_size": args.batch_size,
              "cpu_count": os.cpu_count(), "runs": rows}  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def run(args: argparse.Namespace, processes: int, threads: int) -> dict:
    """Train once with ``processes`` ranks of ``threads`` threads; epoch times and final RMSE."""
    output = args.work / f"p{processes}_t{threads}"
    shutil.rmtree(output, ignore_errors=True)
    gnnmd = shutil.which("gnnmd") or sys.exit("gnnmd is not on PATH")
    train = [gnnmd, "train", "--data", str(args.data), "-o", str(output), "--model-config",
             args.model_config, "--temperature-k", str(args.temperature_k), "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--seed", "0"]  # fmt: skip
    if args.max_frames:
        train += ["--max-frames", str(args.max_frames)]
    if processes > 1:
        train = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)] + train
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(train, check=True, env=environment, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(output / "metrics.csv") as handle:
        metrics = list(csv.DictReader(handle))
    steady = [float(row["seconds"]) for row in metrics[1:]] or [float(metrics[0]["seconds"])]
    return {
        "processes": processes,
        "threads_per_process": threads,
        "seconds_per_epoch": sum(steady) / len(steady),
        "first_epoch_seconds": float(metrics[0]["seconds"]),
        "wall_seconds": wall,
        "final_val_force_rmse": float(metrics[-1]["val_force_rmse"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
