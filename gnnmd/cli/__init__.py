"""The ``gnnmd`` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (bad files, unknown names) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from gnnmd.cli import bench, data, export, listing, openmm_xml, simulate, train, validate
from gnnmd.errors import GnnmdError

SUBCOMMANDS = {
    "bench": (bench, "time batched Langevin dynamics of R replicas (ns/day)"),
    "export": (export, "write a TorchScript module for openmm-torch's TorchForce"),
    "systems": (listing.Systems, "list the shipped systems"),
    "models": (listing.Models, "list the shipped models"),
    "simulate": (simulate, "Langevin dynamics of many replicas: trajectories, logs, checkpoints"),
    "data": (data, "import reference data into the gnnmd dataset format"),
    "train": (train, "force-match a potential to a dataset (torchrun for several processes)"),
    "validate": (validate, "simulate a model and compare it with reference data"),
    "openmm-xml": (openmm_xml, "write system/integrator/state XML that plain OpenMM runs (TorchForce)"),
}


def build_parser() -> argparse.ArgumentParser:
    import gnnmd

    parser = argparse.ArgumentParser(
        prog="gnnmd", description="Graph-neural-network potentials for molecular dynamics."
    )
    parser.add_argument("--version", action="version", version=f"gnnmd {gnnmd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gnnmd command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (GnnmdError, ValueError) as error:
        print(f"gnnmd {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
