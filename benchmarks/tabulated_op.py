"""Time the registered op ``gnnmd::tabulated_conv`` alone, forward and backward, on a real pair list.

Usage (from the repository root; run it on a quiet machine):
    .venv/bin/python benchmarks/tabulated_op.py chignolin 64
    PYTHONPATH=<other tree> .venv/bin/python benchmarks/tabulated_op.py engrailed 16   # side by side

The pairs and distances are those of R replicas of a shipped system after two runner
steps with the ``cgschnet-benchmark`` model (2 nm cutoff, 128 channels); the features,
upstream gradients and the spline table (1024 segments, as that model's blocks get)
are random. Prints ms per call (mean of ``--calls`` after one warm-up call).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from gnnmd.models import load_model
from gnnmd.nn.backends import use_backend
from gnnmd.sim import ReplicaRunner
from gnnmd.systems import load_system


def real_pairs(system: str, replicas: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(2, E) pairs inside the cutoff, (E,) float32 distances in nm, and the bead count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = use_backend(load_model("cgschnet-benchmark"), "tabulated")
    runner = ReplicaRunner.replicas_of(model, load_system(system), replicas, skin_nm=0.2)
    runner.step(2)
    runner.verlet.update(runner.positions)
    pairs, _, distances = runner.verlet.within_cutoff(runner.positions)
    return pairs, distances.detach().float().contiguous(), runner.positions.shape[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    parser.add_argument("replicas", type=int)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs, distances, beads = real_pairs(args.system, args.replicas)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(beads, 128, generator=generator)
    upstream = torch.randn(beads, 128, generator=generator)
    table = 0.01 * torch.randn(1024, 4, 128, generator=generator)
    inverse_spacing, cutoff = 1024 / 2.0, 2.0

    def forward() -> object:
        return torch.ops.gnnmd.tabulated_conv(features, pairs, distances, table, inverse_spacing, cutoff)

    def backward() -> object:
        return torch.ops.gnnmd.tabulated_conv_backward(
            upstream, features, pairs, distances, table, inverse_spacing, cutoff
        )

    timings = []
    for call in (forward, backward):
        call()
        start = time.perf_counter()
        for _ in range(args.calls):
            call()
        timings.append(1000 * (time.perf_counter() - start) / args.calls)
    print(f"{args.system} x {args.replicas}: {beads} beads, {pairs.shape[1]} pairs, {args.threads} threads: "
          f"forward {timings[0]:.3f} ms, backward {timings[1]:.3f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
