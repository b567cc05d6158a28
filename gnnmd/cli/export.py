"""``gnnmd export MODEL --system SYSTEM -o model.pt``: TorchScript for openmm-torch."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gnnmd.cli.options import add_backend_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="shipped model name (see `gnnmd models`) or checkpoint path")
    parser.add_argument(
        "--system",
        default="chignolin",
        help="shipped system name, PDB path, or an imported TorchMD model's PSF (default: chignolin)",
    )
    parser.add_argument("-o", "--output", required=True, help="output TorchScript file")
    parser.add_argument(
        "--replicas", type=int, default=1, help="non-interacting copies of the system (default: 1)"
    )
    parser.add_argument(
        "--forces", action="store_true", help="return (energy, forces) for TorchForce.setOutputsForces(True)"
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="model precision")
    add_backend_options(
        parser, "kernel backend recorded in the module (default: reference; auto: tabulated where the op "
        "library is built; the module then needs the library wherever it is loaded)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from gnnmd.cli.options import ops_instructions
    from gnnmd.export import required_ops, save_exported
    from gnnmd.kernels import choose_backend
    from gnnmd.models import is_trained, load_model, vocabulary_mapping
    from gnnmd.systems import load_system

    backend = choose_backend(args.backend, "cpu", torchscript=True)
    model = load_model(args.model, backend=backend, allow_fallback=args.allow_fallback)
    if args.system.lower().endswith(".psf"):
        from gnnmd.interop.psf import psf_topology_for_model

        masses = model.metadata.get("bead_masses_amu", {})
        topology = psf_topology_for_model(Path(args.system), model.vocabulary, masses)
        name = topology.name
    else:
        system = load_system(args.system, vocabulary_mapping(model.vocabulary))
        topology, name = system.topology, system.name
    model.pack([topology])  # every bead type and prior term covered, or a clear error
    path = save_exported(
        model,
        topology,
        args.output,
        replicas=args.replicas,
        forces=args.forces,
        dtype=getattr(torch, args.dtype),
    )
    particles = topology.n_beads * args.replicas
    print(
        f"wrote {path}: {args.model} on {name} x {args.replicas} replica(s), "
        f"{particles} particles, positions in nm -> energy in kJ/mol"
        + (" and forces in kJ/mol/nm" if args.forces else "")
    )
    if required_ops(model):
        print(ops_instructions())
    if not is_trained(model):
        print(
            f"note: model {args.model!r} is UNTRAINED (priors from native structures, seeded random network)"
        )
    return 0
