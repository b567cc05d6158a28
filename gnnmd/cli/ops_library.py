"""``gnnmd ops-library``: the path of the compiled op library, for scripts that run without gnnmd.

A plain OpenMM or TorchScript script that loads a module exported with a native
backend (``gnnmd export --backend tabulated``) calls
``torch.ops.load_library(PATH)`` with this path before loading the module.
Exit status 2, with the reason, where the library is missing or stale.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", action="store_true", help="build it first if it is missing or stale")


def run(args: argparse.Namespace) -> int:
    from gnnmd.kernels import build, ops

    if args.build:
        build.build()
    print(ops.load())
    return 0
