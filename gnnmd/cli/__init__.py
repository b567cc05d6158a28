"""The ``gnnmd`` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (bad files, unknown names) and system errors (a full disk, a
read-only or missing folder) print one line naming the path and exit with
status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings
from typing import Any, Sequence

from gnnmd.errors import GnnmdError, UntrainedModelWarning

#: Command -> (object with add_arguments and run, as "module:attribute"; one-line summary). A
#: command's module is imported only when that command runs (or all are, for ``--help``), so a
#: listing does not wait for torch.
SUBCOMMANDS = {
    "bench": ("gnnmd.cli.bench", "time batched Langevin dynamics of R replicas (ns/day)"),
    "export": ("gnnmd.cli.export", "write a TorchScript module for openmm-torch's TorchForce"),
    "systems": ("gnnmd.cli.listing:Systems", "list the shipped systems"),
    "models": ("gnnmd.cli.listing:Models", "list the shipped models"),
    "simulate": ("gnnmd.cli.simulate", "Langevin dynamics of many replicas: trajectories, logs, checkpoints"),
    "data": ("gnnmd.cli.data", "import reference data into the gnnmd dataset format"),
    "train": ("gnnmd.cli.train", "force-match a potential to a dataset (torchrun for several processes)"),
    "validate": ("gnnmd.cli.validate", "simulate a model and compare it with reference data"),
    "openmm-xml": ("gnnmd.cli.openmm_xml",
                   "write system/integrator/state XML that plain OpenMM runs (TorchForce)"),
    "import": ("gnnmd.cli.import_model", "import a TorchMD-Net or SchNetPack model as a gnnmd checkpoint"),
    "ops-library": ("gnnmd.cli.ops_library",
                    "print the path of the compiled op library (torch.ops.load_library)"),
}  # fmt: skip


def command(name: str) -> Any:
    """The object behind command ``name``: it has ``add_arguments(parser)`` and ``run(args) -> int``."""
    module_name, _, attribute = SUBCOMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the command it names gets its options (the others keep their
    summaries), so only that command's module is imported."""
    import gnnmd

    parser = argparse.ArgumentParser(
        prog="gnnmd", description="Graph-neural-network potentials for molecular dynamics."
    )
    parser.add_argument("--version", action="version", version=f"gnnmd {gnnmd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = [word for word in (sys.argv[1:] if argv is None else argv) if not word.startswith("-")][:1]
    wanted = named if named and named[0] in SUBCOMMANDS else list(SUBCOMMANDS)
    for name, (_, summary) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name in wanted:
            handler = command(name)
            handler.add_arguments(sub)
            sub.set_defaults(handler=handler.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gnnmd command line; returns the exit status."""
    args = build_parser(argv).parse_args(argv)
    # Every command says UNTRAINED in its own output; the library's warning would repeat it.
    warnings.filterwarnings("ignore", category=UntrainedModelWarning)
    warnings.formatwarning = _one_line_warning
    # Commands set their own thread count (--threads); a caller that uses torch gets its own back.
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        return args.handler(args)
    except (GnnmdError, ValueError) as error:
        print(f"gnnmd {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only or missing folder, a file for a folder...
        print(f"gnnmd {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    finally:
        if threads is not None:
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
