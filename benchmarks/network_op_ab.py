"""The exported TorchScript module with the network op and with the same model's blocks one by one.

    python benchmarks/network_op_ab.py [--system chignolin] [--replicas 1] [--rounds 7] [--threads 2]

Both modules (energy + forces, float32, tabulated backend, `cgschnet-benchmark`) are exported from
one converted model, the second with ``network.network_kernel`` cleared, and called alternately in
one process (so that a drift in the machine's speed affects both alike); prints their force
difference and each one's ms per call over the rounds, sorted.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from gnnmd.export import export_potential
from gnnmd.models import load_model
from gnnmd.nn.backends import use_backend
from gnnmd.openmm.simulation import replica_positions
from gnnmd.systems import load_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="chignolin")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    system = load_system(args.system)
    with_op = use_backend(load_model("cgschnet-benchmark"), "tabulated")
    blockwise = copy.deepcopy(with_op)
    blockwise.network.network_kernel = None
    modules = {
        "blocks one by one": export_potential(blockwise, system.topology, args.replicas, forces=True),
        "network op": export_potential(with_op, system.topology, args.replicas, forces=True),
    }
    x = torch.as_tensor(replica_positions(system, args.replicas), dtype=torch.float64)
    (_, f_blocks), (_, f_op) = (module(x) for module in modules.values())
    difference = float((f_op - f_blocks).abs().max() / f_blocks.pow(2).mean().sqrt())
    print(f"force difference / force RMS: {difference:.1e}")
    calls = max(5, 200 // args.replicas)
    for module in modules.values():
        for _ in range(20):  # TorchScript profiles and optimises on its first calls
            module(x)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(args.rounds):
        for name, module in modules.items():
            start = time.perf_counter()
            for _ in range(calls):
                module(x)
            times[name].append(1000.0 * (time.perf_counter() - start) / calls)
    for name, values in times.items():
        figures = ", ".join(f"{v:.3f}" for v in sorted(values))
        print(f"{args.system} x{args.replicas} {name:18s} ms/call: {figures}")


if __name__ == "__main__":
    main()
