"""Build, check and time every kernel backend in one run; print one table.

Usage (from the repository root):
    .venv/bin/python benchmarks/kernels.py                          # 1ENH x 64, CPU
    .venv/bin/python benchmarks/kernels.py --system chignolin       # chignolin x 64
    .venv/bin/python benchmarks/kernels.py --device cuda --json out.json

The model is the benchmark configuration (``gnnmd.models.BENCHMARK_CONFIG``:
mlcg's example CGSchNet, 128 features / 128 filters / 5 blocks / 128 Gaussians /
2 nm cosine cutoff / tanh), float32, dt = 4 fs, with the shipped untrained
``cgschnet-benchmark`` weights. For every backend it reports ns/day, ms per
step, peak memory over the timed window, and the force error of the network
against the reference backend at the same positions (relative to the
reference network-force RMS; the priors are identical in every backend and
would only dilute the error).

The floor: the flops each step must run (energy + forces: the network's
matrix products and per-pair arithmetic for the pairs inside the cutoff) at
the machine's measured matrix-product rate, and the bytes it must move at the
measured copy bandwidth; "x floor" is measured time over the larger of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch

from gnnmd.engine import LangevinSettings
from gnnmd.engine.bench import provenance
from gnnmd.kernels import BACKENDS, TABULATED
from gnnmd.models import load_model
from gnnmd.neighbors import within_cutoff
from gnnmd.nn.backends import use_backend
from gnnmd.sim import ReplicaRunner
from gnnmd.sim.benchmark import measure
from gnnmd.systems import load_system


@dataclass
class Row:
    backend: str
    ns_per_day: float
    ms_per_step: float
    peak_memory_mb: float
    peak_memory_kind: str
    force_error_max: float
    force_error_rms: float
    floor_ms: float
    times_floor: float
    speedup_vs_reference: float | None = None
    conversion_s: float = 0.0


def machine_rates(device: torch.device) -> dict:
    """Measured matrix-product rate (flop/s, float32 and 16-bit) and copy bandwidth (byte/s)."""

    def timed(call, repeats: int = 10) -> float:
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats

    rows = 65536 if device.type == "cpu" else 1 << 20
    rates = {}
    for name, dtype in (("float32", torch.float32), ("float16", torch.float16)):
        a = torch.randn(rows, 128, device=device).to(dtype)
        b = torch.randn(128, 128, device=device).to(dtype)
        out = torch.empty(rows, 128, device=device, dtype=dtype)  # preallocated: no page faults timed
        seconds = timed(lambda a=a, b=b, out=out: torch.mm(a, b, out=out))
        rates[f"matmul_{name}_flop_per_s"] = 2 * rows * 128 * 128 / seconds
    source = torch.randn(64 << 20, device=device)
    target = torch.empty_like(source)
    rates["copy_byte_per_s"] = 2 * source.numel() * 4 / timed(lambda: target.copy_(source))
    return rates


def table_bytes(model) -> int:
    """Bytes of the per-block filter data a step reads: spline tables, or filter weights."""
    blocks = model.network.interactions
    if model.network.backend in TABULATED:
        tables = [block.kernel.coefficients for block in blocks]
        return sum(table.numel() * table.element_size() for table in tables)
    return sum(sum(p.numel() * 4 for p in block.filter_net.parameters()) for block in blocks)


def step_floor(
    config, nodes: int, pairs: int, backend: str, rates: dict, filter_bytes: int
) -> tuple[float, dict]:
    """(seconds, details): the least time a step can take on this machine."""
    f, h, k, blocks = config.num_filters, config.hidden_channels, config.num_rbf, config.num_interactions
    node_flops = 2 * 2 * nodes * (h * f + f * h + h * h) * blocks  # forward + input gradients
    if backend in TABULATED:
        pair_flops = (10 + 19) * pairs * f * blocks  # spline + messages; backward: W, W', grads, dot
        matmul_flops = node_flops
    else:
        filter_flops = 2 * pairs * (k * f + f * f) * 2 * blocks  # filter network, forward + input grads
        pair_flops = 12 * pairs * f * blocks
        matmul_flops = node_flops + filter_flops
    rate = rates["matmul_float16_flop_per_s" if backend == "fused16" and "cuda" in rates else
                 "matmul_float32_flop_per_s"]  # fmt: skip
    compute = matmul_flops / rate + pair_flops / rate
    # Bytes that must move: per block, node features and gradients in and out, the pair
    # list (two int64 and one float per pair) once per pass, and the weights or tables.
    moved = blocks * (6 * nodes * f * 4 + 2 * pairs * 20) + filter_bytes
    memory = moved / rates["copy_byte_per_s"]
    return max(compute, memory), {"flops": matmul_flops + pair_flops, "bytes": moved}


def network_forces(model, batch, positions):
    x = positions.detach().clone().requires_grad_(True)
    pairs, _, distances = within_cutoff(x, batch.pairs, batch.graph_index, model.cutoff_nm)
    energy = model.network(batch.types, pairs, distances).sum()
    (gradient,) = torch.autograd.grad(energy, x)
    return -gradient, pairs.shape[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="engrailed", help="shipped system (default: engrailed, 1ENH)")
    parser.add_argument("--replicas", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per backend (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--model", default="cgschnet-benchmark")
    parser.add_argument("--check-replicas", type=int, default=4,
                        help="replicas whose forces are checked against reference (default: 4)")  # fmt: skip
    parser.add_argument("--json", help="write the rows and the machine description here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    system, reference = load_system(args.system), load_model(args.model)
    settings = LangevinSettings(timestep_fs=4.0)
    rates = machine_rates(device)

    # Thermalised positions for the force check, on a few replicas: the reference backend
    # needs tens of GB for 1ENH x 64 at a 2 nm cutoff, more than a small machine has.
    checked = min(args.check_replicas, args.replicas)
    probe = ReplicaRunner.replicas_of(reference, system, checked, settings=settings, device=device)
    probe.step(5)
    positions, check_batch = probe.positions.clone(), probe.batch
    reference_forces, _ = network_forces(probe.model, check_batch, positions)
    scale = float(reference_forces.pow(2).mean().sqrt())
    del probe
    full_batch = reference.pack([system.topology] * args.replicas, device)
    full_positions = torch.as_tensor(system.positions_nm, dtype=torch.float32, device=device).repeat(
        args.replicas, 1
    )
    _, pairs = network_forces(use_backend(reference, "tabulated"), full_batch, full_positions)
    rows = []
    for backend in args.backends.split(","):
        start = time.perf_counter()
        model = use_backend(reference, backend)
        conversion = time.perf_counter() - start
        runner = ReplicaRunner.replicas_of(model, system, args.replicas, settings=settings, device=device)
        forces, _ = network_forces(runner.model, check_batch, positions)
        error = forces - reference_forces
        result = measure(
            runner,
            args.steps,
            args.warmup,
            {"system": system.name, "backend": backend, "model": args.model, "model_trained": False},
        )
        nodes = int(full_batch.ptr[-1])
        floor, _ = step_floor(reference.config, nodes, pairs, backend, rates, table_bytes(model))
        rows.append(Row(backend, result.ns_per_day, result.ms_per_step, result.peak_memory_mb,
                        result.peak_memory_kind, float(error.abs().max()) / scale,
                        float(error.pow(2).mean().sqrt()) / scale, 1000 * floor,
                        result.ms_per_step / (1000 * floor), conversion_s=conversion))  # fmt: skip
        del runner, model
    base = next((r for r in rows if r.backend == "reference"), None)
    for row in rows:
        row.speedup_vs_reference = row.ns_per_day / base.ns_per_day if base else None

    allocator = os.environ.get("MALLOC_MMAP_MAX_", "unset")
    print(f"{system.name} ({system.topology.n_beads} beads) x {args.replicas}, {args.model}, float32, "
          f"dt 4 fs, {device}, {pairs} pairs in cutoff, MALLOC_MMAP_MAX_={allocator}")  # fmt: skip
    fp32, fp16 = rates["matmul_float32_flop_per_s"] / 1e9, rates["matmul_float16_flop_per_s"] / 1e9
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"matmul fp32 {fp32:.0f} GFLOP/s, fp16 {fp16:.0f} GFLOP/s, "
          f"copy {rates['copy_byte_per_s'] / 1e9:.1f} GB/s")  # fmt: skip
    header = ("backend", "ns/day", "ms/step", "x ref", "peak MB", "F err max", "F err rms", "floor ms",
              "x floor", "convert s")  # fmt: skip
    print(" | ".join(f"{h:>9}" for h in header))
    for r in rows:
        speed = f"{r.speedup_vs_reference:.1f}" if r.speedup_vs_reference else "-"
        cells = (r.backend, f"{r.ns_per_day:.1f}", f"{r.ms_per_step:.1f}", speed, f"{r.peak_memory_mb:.0f}",
                 f"{r.force_error_max:.1e}", f"{r.force_error_rms:.1e}", f"{r.floor_ms:.1f}",
                 f"{r.times_floor:.1f}", f"{r.conversion_s:.1f}")  # fmt: skip
        print(" | ".join(f"{c:>9}" for c in cells))
    if args.json:
        document = {"rows": [asdict(r) for r in rows], "rates": rates, "pairs": pairs,
                    "provenance": provenance(), "argv": argv if argv is not None else sys.argv[1:],
                    "malloc_mmap_max": os.environ.get("MALLOC_MMAP_MAX_")}  # fmt: skip
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
