"""Command-line options shared by several subcommands (units in the option names)."""

from __future__ import annotations

import argparse

from gnnmd.sim.integrators import LangevinSettings


def add_langevin_options(parser: argparse.ArgumentParser) -> None:
    """--dt-fs, --temperature-k, --friction-per-ps and --seed, with their defaults."""
    parser.add_argument("--dt-fs", type=float, default=4.0, help="time step in fs (default: 4)")
    parser.add_argument(
        "--temperature-k", type=float, default=300.0, help="thermostat temperature in K (default: 300)"
    )
    parser.add_argument(
        "--friction-per-ps", type=float, default=1.0, help="Langevin friction in 1/ps (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and noise (default: 0)")


def langevin_settings(args: argparse.Namespace) -> LangevinSettings:
    """The LangevinSettings of options added by :func:`add_langevin_options`."""
    return LangevinSettings(args.dt_fs, args.temperature_k, args.friction_per_ps)
