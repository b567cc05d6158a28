"""What the tabulated convolution's speed depends on at 64 replicas: table size, and table dtype.

    python benchmarks/tabulated_tables.py [--system engrailed] [--replicas 64] [--rounds 7]

Two measurements in one process, each alternating its variants round by round (so that a drift in
the machine's speed affects all alike), ms per call, sorted:

1. ``gnnmd::tabulated_conv`` forward and backward on the pairs of `cgschnet-benchmark`'s first
   block, with its spline table in float32 and in float16 (the ``tabulated16`` backend), and the
   largest difference between the two relative to the float32 result's largest value;
2. the exported energy + forces module (tabulated backend) with spline grids of 256, 512, 1024 and
   2048 segments (0.5 to 4 MiB per block in float32): whether the table's size, against a core's
   L2 cache, sets the step.

Units: ms; distances in nm.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from gnnmd.export import export_potential
from gnnmd.kernels import ops
from gnnmd.models import load_model
from gnnmd.neighbors import within_cutoff
from gnnmd.nn.backends import use_backend
from gnnmd.openmm.simulation import replica_positions
from gnnmd.systems import load_system

SEGMENTS = (256, 512, 1024, 2048)


def timed(call, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1000.0 * (time.perf_counter() - start) / repeats


def report(times: dict[str, list[float]]) -> None:
    for name, values in times.items():
        print(f"  {name:28s} " + ", ".join(f"{v:.1f}" for v in sorted(values)))


def table_dtypes(model, system, replicas: int, rounds: int) -> None:
    batch = model.pack([system.topology] * replicas)
    x = torch.as_tensor(replica_positions(system, replicas), dtype=torch.float32)
    pairs, _, r = within_cutoff(x, batch.pairs, batch.graph_index, model.cutoff_nm)
    kernel = model.network.interactions[0].kernel
    tables = {"float32": kernel.coefficients.float().contiguous(), "float16": kernel.coefficients.half()}
    h = torch.randn(x.shape[0], kernel.coefficients.shape[2], generator=torch.Generator().manual_seed(0))
    grad = torch.randn_like(h)
    forward, backward = torch.ops.gnnmd.tabulated_conv, torch.ops.gnnmd.tabulated_conv_backward
    spline = (kernel.inv_spacing, kernel.cutoff_nm)
    outputs = {name: forward(h, pairs, r, t, *spline) for name, t in tables.items()}
    change = float((outputs["float16"] - outputs["float32"]).abs().max() / outputs["float32"].abs().max())
    print(f"{system.name} x {replicas}: {pairs.shape[1]} pairs; the float16 table changes the messages "
          f"by {change:.1e} of their largest")  # fmt: skip
    times: dict[str, list[float]] = {f"{n} {way}": [] for n in tables for way in ("forward", "backward")}
    for _ in range(rounds):
        for name, t in tables.items():
            args = (h, pairs, r, t, kernel.inv_spacing, kernel.cutoff_nm)
            times[f"{name} forward"].append(timed(lambda args=args: forward(*args), 3))
            times[f"{name} backward"].append(timed(lambda args=args: backward(grad, *args), 3))
    print("gnnmd::tabulated_conv, one block, ms per call:")
    report(times)


def table_sizes(reference, system, replicas: int, rounds: int) -> None:
    x = torch.as_tensor(replica_positions(system, replicas), dtype=torch.float64)
    modules = {
        f"{size} segments": export_potential(
            use_backend(reference, "tabulated", points=size), system.topology, replicas, forces=True
        )
        for size in SEGMENTS
    }
    for module in modules.values():
        for _ in range(3):  # TorchScript profiles and optimises on its first calls
            module(x)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(rounds):
        for name, module in modules.items():
            times[name].append(timed(lambda module=module: module(x), 1))
    print("exported energy + forces, tabulated, ms per call:")
    report(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="engrailed")
    parser.add_argument("--replicas", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # cgschnet-benchmark is untrained: fine for timing
    torch.set_num_threads(args.threads)
    ops.load()
    system, reference = load_system(args.system), load_model("cgschnet-benchmark")
    table_dtypes(use_backend(reference, "tabulated"), system, args.replicas, args.rounds)
    table_sizes(reference, system, args.replicas, max(3, args.rounds // 2))


if __name__ == "__main__":
    main()
