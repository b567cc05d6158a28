"""Where a replica-runner step goes: the whole step against its parts, at the same positions.

Usage (from the repository root):
    .venv/bin/python benchmarks/step_breakdown.py engrailed 1 --steps 20
Prints, per Verlet skin, ms per runner step, per model call (energy and forces
over all candidate pairs), per integrator half-step and per neighbour-list
update + cutoff filter. Timings are wall-clock means over ``--steps`` calls
after two warm-up steps; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from gnnmd.models import load_model
from gnnmd.neighbors import within_cutoff
from gnnmd.sim import ReplicaRunner
from gnnmd.systems import load_system


def mean_ms(call: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1000.0 * (time.perf_counter() - start) / repeats


def parts(runner: ReplicaRunner, model) -> list[tuple[str, Callable[[], object]]]:
    """The whole step, the model call over all candidates, B-A-O-A, and the neighbour-list forward."""
    x, batch, verlet = runner.positions, runner.batch, runner.verlet

    def neighbours() -> object:
        if verlet is None:
            return within_cutoff(x, batch.pairs, batch.graph_index, model.cutoff_nm)
        verlet.update(x)
        return verlet.within_cutoff(x)

    return [
        ("step", lambda: runner.step(1)),
        ("model call", lambda: model.energy_and_forces(x, batch)),
        ("B-A-O-A", lambda: runner.integrator.drift(x, runner.velocities, runner.forces, 0)),
        ("neighbour list forward", neighbours),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", help="shipped system name")
    parser.add_argument("replicas", type=int, help="replicas in the batch")
    parser.add_argument("--steps", type=int, default=10, help="calls timed per part (default: 10)")
    parser.add_argument("--model", default="default", help="model name or path (default: default)")
    args = parser.parse_args(argv)
    system, model = load_system(args.system), load_model(args.model)
    for skin in (0.0, 0.2):
        runner = ReplicaRunner.replicas_of(model, system, args.replicas, skin_nm=skin)
        runner.step(2)
        print(f"{args.system} x {args.replicas}, skin {skin:g} nm: " + ", ".join(
            f"{name} {mean_ms(call, args.steps):.2f} ms" for name, call in parts(runner, model)
        ) + f" (torch threads {torch.get_num_threads()})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
