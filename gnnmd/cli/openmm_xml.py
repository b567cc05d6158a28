"""``gnnmd openmm-xml SYSTEM --model MODEL -o DIR``: an OpenMM set-up that runs without gnnmd.

Writes system.xml (TorchForce with the model embedded), integrator.xml,
state.xml, cg.pdb and gnnmd-setup.json; see :mod:`gnnmd.openmm.xml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gnnmd.cli.options import add_backend_options, add_langevin_options, langevin_settings


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
    add_langevin_options(parser)
    parser.add_argument(
        "--precision", choices=("single", "mixed", "double"), default="mixed",
        help="double exports a float64 model, single/mixed float32 (default: mixed)",
    )  # fmt: skip
    parser.add_argument(
        "--box-nm", type=float, nargs=3, metavar=("A", "B", "C"),
        help="periodic rectangular box edge lengths in nm (default: no box)",
    )  # fmt: skip
    add_backend_options(parser, "kernel backend of the embedded model (default: reference)")


def run(args: argparse.Namespace) -> int:
    from gnnmd.cli.options import ops_instructions
    from gnnmd.export import required_ops
    from gnnmd.models import is_trained, vocabulary_mapping
    from gnnmd.openmm.system import resolve_model
    from gnnmd.openmm.xml import write_xml_setup
    from gnnmd.systems import load_system

    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    model = resolve_model(args.model, backend=args.backend, allow_fallback=args.allow_fallback)
    system = load_system(args.system, vocabulary_mapping(model.vocabulary))
    box = np.diag(args.box_nm) if args.box_nm else None
    settings = langevin_settings(args)
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
    if required_ops(model):  # an exported file's needs come from its own metadata
        print(ops_instructions())
    if not isinstance(model, (str, Path)) and not is_trained(model):
        print(
            f"note: model {args.model!r} is UNTRAINED (priors from native structures, seeded random network)"
        )
    return 0
