"""``gnnmd bench``: ns/day of R replicas of one system through the replica runner."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gnnmd.kernels import BACKENDS

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system", default="chignolin", help="shipped system name or PDB path (default: chignolin)"
    )
    parser.add_argument(
        "--model", default="default", help="shipped model name or checkpoint path (default: default)"
    )
    parser.add_argument("--replicas", type=int, default=64, help="replicas stepped together (default: 64)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps (default: 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps (default: 10)")
    parser.add_argument("--dt-fs", type=float, default=4.0, help="time step in fs (default: 4)")
    parser.add_argument(
        "--temperature-k", type=float, default=300.0, help="thermostat temperature in K (default: 300)"
    )
    parser.add_argument(
        "--friction-per-ps", type=float, default=1.0, help="Langevin friction in 1/ps (default: 1)"
    )
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="precision (default: float32)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="reference", help="kernel backend (default: reference)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of velocities and noise (default: 0)"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this path")


def run(args: argparse.Namespace) -> int:
    from gnnmd.kernels import resolve_backend
    from gnnmd.models import is_trained, load_model
    from gnnmd.sim import LangevinSettings, ReplicaRunner
    from gnnmd.sim.benchmark import measure, report
    from gnnmd.systems import load_system

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    backend = resolve_backend(args.backend)
    model = load_model(args.model)
    system = load_system(args.system)
    settings = LangevinSettings(args.dt_fs, args.temperature_k, args.friction_per_ps)
    runner = ReplicaRunner.replicas_of(
        model, system, args.replicas, settings=settings, device=args.device,
        dtype=getattr(torch, args.dtype), seed=args.seed,
    )  # fmt: skip
    labels = {
        "system": system.name,
        "backend": backend,
        "model": args.model,
        "model_trained": is_trained(model),
    }
    result = measure(runner, args.steps, args.warmup, labels)
    print_result(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report([result]), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def print_result(result) -> None:
    """One metric per row: fits an 80-column terminal and never truncates a number."""
    table = Table(title="gnnmd bench (replica runner)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("system", f"{result.system} ({result.beads} beads)"),
        ("replicas", str(result.replicas)),
        ("time step", f"{result.dt_fs:g} fs"),
        ("backend / device", f"{result.backend} / {result.device} {result.dtype}"),
        ("ns/day (aggregate)", f"{result.ns_per_day:.2f}"),
        ("ns/day per replica", f"{result.ns_per_day_per_replica:.3f}"),
        ("steps/s", f"{result.steps_per_second:.2f}"),
        ("ms/step", f"{result.ms_per_step:.1f}"),
        (f"peak memory ({result.peak_memory_kind})", f"{result.peak_memory_mb:.0f} MB"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    trained = (
        "trained"
        if result.model_trained
        else "UNTRAINED (priors from native structures, seeded random network)"
    )
    console.print(f"model {result.model!r}: {trained}")
    console.print(f"{result.steps} timed steps after {result.warmup_steps} warm-up steps")
