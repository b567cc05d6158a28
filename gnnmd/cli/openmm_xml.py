"""``gnnmd openmm-xml SYSTEM --model MODEL -o DIR``: an OpenMM set-up that runs without gnnmd.

Writes system.xml (TorchForce with the model embedded), integrator.xml,
state.xml, cg.pdb and gnnmd-setup.json; see :mod:`gnnmd.openmm.xml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("system", help="shipped system name (see `gnnmd systems`) or PDB path")
    parser.add_argument(
        "--model", default="default",
        help="shipped model name, checkpoint path or `gnnmd export` file (default: default)",
    )  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument(
        "--replicas", type=int, default=1, help="non-interacting copies in one TorchForce (default: 1)"
    )
    parser.add_argument("--dt-fs", type=float, default=4.0, help="time step in fs (default: 4)")
    parser.add_argument(
        "--temperature-k", type=float, default=300.0, help="thermostat temperature in K (default: 300)"
    )
    parser.add_argument(
        "--friction-per-ps", type=float, default=1.0, help="Langevin friction in 1/ps (default: 1)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the velocities and the integrator noise (default: 0)"
    )
    parser.add_argument(
        "--precision", choices=("single", "mixed", "double"), default="mixed",
        help="double exports a float64 model, single/mixed float32 (default: mixed)",
    )  # fmt: skip
    parser.add_argument(
        "--box-nm", type=float, nargs=3, metavar=("A", "B", "C"),
        help="periodic rectangular box edge lengths in nm (default: no box)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from gnnmd.models import is_trained
    from gnnmd.openmm.system import resolve_model
    from gnnmd.openmm.xml import write_xml_setup
    from gnnmd.sim.integrators import LangevinSettings
    from gnnmd.systems import load_system

    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    system = load_system(args.system)
    model = resolve_model(args.model)
    box = np.diag(args.box_nm) if args.box_nm else None
    settings = LangevinSettings(args.dt_fs, args.temperature_k, args.friction_per_ps)
    written = write_xml_setup(
        system, model, args.output, replicas=args.replicas, langevin=settings, seed=args.seed,
        box_nm=box, precision=args.precision,
    )  # fmt: skip
    particles = system.topology.n_beads * args.replicas
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    print(f"{system.name} x {args.replicas} replica(s): {particles} particles, TorchForce with {args.model}")
    print(
        "run it with plain OpenMM: import torch, then openmmtorch, then load the XML files (docs/openmm.md)"
    )
    if not isinstance(model, (str, Path)) and not is_trained(model):
        print(
            f"note: model {args.model!r} is UNTRAINED (priors from native structures, seeded random network)"
        )
    return 0
