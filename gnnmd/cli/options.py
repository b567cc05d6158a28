"""Command-line options shared by several subcommands (units in the option names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gnnmd.engine import LangevinSettings


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


def add_backend_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--backend (one kernel backend, or ``auto``: see gnnmd.kernels.choose_backend) and --allow-fallback."""
    from gnnmd.kernels import AUTO, BACKENDS

    parser.add_argument("--backend", default="reference", choices=(AUTO, *BACKENDS), help=help_text)
    add_fallback_option(parser)


def add_fallback_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-fallback", action="store_true",
        help="run a backend's pure-torch twin where its fast kernel cannot run (said once, and recorded); "
        "without it such a backend is an error",
    )  # fmt: skip


def ops_instructions() -> str:
    """How a process without gnnmd loads the op library an exported module calls."""
    from gnnmd.kernels import ops

    return (
        "this module calls gnnmd's compiled ops: a process that loads it without `import gnnmd` runs "
        f"`torch.ops.load_library({str(ops.library_path())!r})` first (path: `gnnmd ops-library`)"
    )


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", default="auto",
        help="CPU threads for torch: a count, or auto = CPUs not kept busy by other work (1-minute load "
        "average), at least 1 (default: auto; spinning threads on shared cores are slow)",
    )  # fmt: skip


def add_coordinates_option(parser: argparse.ArgumentParser) -> None:
    """--coordinates: positions for a system given as a PSF topology."""
    parser.add_argument(
        "--coordinates",
        type=Path,
        help="positions for a PSF --system (an imported TorchMD topology): XTC, DCD or PDB, first frame",
    )


def load_systems_for_model(
    names: list[str], vocabulary: list[str], metadata: dict, coordinates: Path | None
) -> list:
    """Systems as a model with ``vocabulary`` and ``metadata`` reads them: a CA model maps PDB files
    with the ``ca`` mapping; a PSF (an imported TorchMD topology) takes its positions from
    ``coordinates`` and its masses from the model's record where the PSF has none."""
    from gnnmd.interop.psf import psf_system
    from gnnmd.models import vocabulary_mapping
    from gnnmd.systems import load_system

    masses = metadata.get("bead_masses_amu", {})
    mapping = vocabulary_mapping(vocabulary)
    if coordinates is not None and not any(name.lower().endswith(".psf") for name in names):
        raise ValueError("--coordinates is for a PSF --system; PDB files and shipped systems carry positions")
    return [
        psf_system(Path(name), coordinates, vocabulary, masses)
        if name.lower().endswith(".psf")
        else load_system(name, mapping)
        for name in names
    ]
