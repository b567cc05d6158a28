"""Time the ASE calculator on all-atom alanine dipeptide: overhead per call, and batch against one by one.

    python benchmarks/ase_calculator.py [--model ala2-allatom] [--threads 1] [--frames 200] [--repeats 5]

Prints, in ms (median over --repeats, after one warm-up), for the held-out
reference frames (22 atoms each, float64, CPU):

- ``model``: the model's own energy_and_forces on one frame (nm, kJ/mol);
- ``calculator``: atoms.get_forces() on one frame with new positions (all conversions included);
- ``one by one``: --frames frames through get_forces, one after another;
- ``batch``: the same frames through calculate_batch, one model call.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from ase import Atoms

from gnnmd.ase import GNNMDCalculator
from gnnmd.data.ala2_allatom import ala2_allatom_frames, ala2_allatom_topology
from gnnmd.units import ANGSTROM_PER_NM


def median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ala2-allatom", help="shipped model name or checkpoint path")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--frames", type=int, default=200, help="frames for the batch comparison")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    positions, _ = ala2_allatom_frames()
    positions = positions[-args.frames :]
    topology = ala2_allatom_topology()
    calc = GNNMDCalculator(model=args.model, device="cpu", dtype="float64")
    images = [Atoms(symbols=topology.bead_types, positions=x * ANGSTROM_PER_NM) for x in positions]
    batch = calc.model.pack([topology])
    one = torch.tensor(positions[0])
    counter = iter(range(10**9))

    def calculator_call() -> None:
        atoms = images[next(counter) % len(images)]
        calc.get_forces(atoms)

    def one_by_one() -> None:
        for atoms in images:
            calc.calculate(atoms, ["forces"])

    rows = {
        "model (1 frame)": median_ms(lambda: calc.model.energy_and_forces(one, batch), args.repeats * 20),
        "calculator (1 frame)": median_ms(calculator_call, args.repeats * 20),
        f"one by one ({len(images)} frames)": median_ms(one_by_one, args.repeats),
        f"batch ({len(images)} frames, 1 call)": median_ms(
            lambda: calc.calculate_batch(images), args.repeats
        ),
    }
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), model {args.model}, float64 CPU")  # fmt: skip
    for name, value in rows.items():
        print(f"{name:32s} {value:10.2f} ms")
    serial, batched = list(rows.values())[2:]
    print(f"{'batch speed-up':32s} {serial / batched:10.2f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
