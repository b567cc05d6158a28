"""What OpenMM itself costs per step around a gnnmd force, on each CPU-side platform.

    python benchmarks/openmm_platform_overhead.py [--systems chignolin,engrailed] [--replicas 1,64]

For each system × replicas, a Langevin step of the same particles (same masses) whose only force is
a TorchForce around a model that returns zeros (:mod:`gnnmd.openmm.overhead`), timed on the
Reference and CPU platforms in alternation (three rounds each): what a gnnmd System pays OpenMM per
step besides the model. Prints one line per case with the per-round figures in ms/step.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gnnmd.openmm.overhead import route_overhead_ms_per_step
from gnnmd.openmm.platforms import PlatformSpec
from gnnmd.systems import load_system

PLATFORMS = ("Reference", "CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="chignolin,engrailed")
    parser.add_argument("--replicas", default="1,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.systems.split(","):
        system = load_system(name)
        for replicas in (int(r) for r in args.replicas.split(",")):
            masses = np.tile(system.topology.masses_amu, replicas)
            # Replicas side by side, 5 nm apart: the zero model never looks at them.
            offsets = np.repeat(np.arange(replicas) * 5.0, system.topology.n_beads)[:, None]
            positions = np.tile(system.positions_nm, (replicas, 1)) + offsets
            steps = max(20, 20000 // len(masses))
            figures: dict[str, list[float]] = {platform: [] for platform in PLATFORMS}
            for _ in range(args.rounds):
                for platform in PLATFORMS:
                    figures[platform].append(
                        route_overhead_ms_per_step("torch", masses, positions, PlatformSpec(platform), steps)
                    )
            cells = "  ".join(f"{p}: {', '.join(f'{v:.4f}' for v in figures[p])}" for p in PLATFORMS)
            print(f"{name} x{replicas} ({len(masses)} particles) ms/step  {cells}")


if __name__ == "__main__":
    main()
