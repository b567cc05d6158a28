"""The ``gnnmd`` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (bad files, unknown names) and system errors (a full disk, a
read-only or missing folder) print one line naming the path and exit with
status 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from typing import Sequence

from gnnmd.cli import (
    bench,
    data,
    export,
    import_model,
    listing,
    openmm_xml,
    ops_library,
    simulate,
    train,
    validate,
)
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
    "import": (import_model, "import a TorchMD-Net or SchNetPack model as a gnnmd checkpoint"),
    "ops-library": (ops_library, "print the path of the compiled op library (torch.ops.load_library)"),
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
    from gnnmd.models import UntrainedModelWarning

    # Every command says UNTRAINED in its own output; the library's warning would repeat it.
    warnings.filterwarnings("ignore", category=UntrainedModelWarning)
    warnings.formatwarning = _one_line_warning
    import torch

    threads = torch.get_num_threads()  # commands set their own (--threads); a caller's count comes back
    try:
        return args.handler(args)
    except (GnnmdError, ValueError) as error:
        print(f"gnnmd {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only or missing folder, a file for a folder...
        print(f"gnnmd {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)


def _one_line_warning(message, category, *args, **kwargs) -> str:
    """Warnings on the command line: one line, no source location."""
    return f"gnnmd: warning: {message}\n"


def describe_os_error(error: OSError) -> str:
    """One line: the path, what the system said, its errno name, and that finished work is kept."""
    name = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    where = f"{error.filename}: " if error.filename else ""
    what = error.strerror or str(error)
    return (
        f"{where}{what}{f' ({name})' if name else ''}; files already written (outputs, the last "
        "checkpoint) are kept"
    )


if __name__ == "__main__":
    sys.exit(main())
