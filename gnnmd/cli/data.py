"""``gnnmd data``: reference data into the gnnmd dataset format (HDF5; nm, kJ/mol)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gnnmd.data.allatom import DEFAULT_TIMESTEP_FS, FORCEFIELDS, PLATFORMS, RESOLUTIONS, resolve_platform
from gnnmd.data.qm import ENGINES
from gnnmd.topology import MAPPINGS
from gnnmd.units import ENERGY_UNITS, LENGTH_UNITS

PLATFORM_HELP = "OpenMM platform (default auto: CUDA when OpenMM has it, else CPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    output_help = "dataset file to create or extend (.h5)"
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    cgnet = actions.add_parser(
        "import-cgnet", help="the shipped CGnet alanine-dipeptide data (10,000 frames)"
    )
    cgnet.add_argument("-o", "--output", type=Path, required=True, help=output_help)
    arrays = actions.add_parser("import-arrays", help="(F, n, 3) .npy coordinates and forces of a system")
    arrays.add_argument("system", help="shipped system name or PDB path whose CG beads the arrays hold")
    arrays.add_argument("--coordinates", type=Path, required=True, help=".npy (F, n, 3) bead positions")
    arrays.add_argument("--forces", type=Path, required=True, help=".npy (F, n, 3) bead forces")
    arrays.add_argument(
        "--energies", type=Path, help="optional .npy (F,) potential energy per frame, in --energy-unit"
    )
    arrays.add_argument("--length-unit", choices=LENGTH_UNITS, required=True, help="unit of positions")
    arrays.add_argument(
        "--energy-unit", choices=ENERGY_UNITS, required=True, help="of the energies; forces are energy/length"
    )
    arrays.add_argument("-o", "--output", type=Path, required=True, help=output_help)
    allatom = actions.add_parser(
        "allatom",
        help="run all-atom OpenMM dynamics and record CG frames and forces, or all atoms with energies",
    )
    allatom.add_argument("system", help="shipped system name or PDB path")
    allatom.add_argument("--ns", type=float, required=True, help="simulated time to record, ns")
    allatom.add_argument("--temperature-k", type=float, default=300.0, help="temperature in K (300)")
    allatom.add_argument("--frame-interval-ps", type=float, default=1.0, help="time between frames, ps (1)")
    allatom.add_argument(
        "--resolution", choices=RESOLUTIONS, default="cg",
        help="cg: CG beads, mapped forces, X-H bonds constrained (default); atom: every atom as molecule "
        "SYSTEM_allatom, element types, forces and potential energies, no constraints",
    )  # fmt: skip
    defaults = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TIMESTEP_FS.items())
    allatom.add_argument("--timestep-fs", type=float, help=f"integration step, fs ({defaults})")
    allatom.add_argument(
        "--forcefield", choices=sorted(FORCEFIELDS), default="amber14-gbn2", help="force field"
    )
    allatom.add_argument("--platform", choices=("auto", *PLATFORMS), default="auto", help=PLATFORM_HELP)
    allatom.add_argument("--seed", type=int, default=1, help="velocities and thermostat seed (1)")
    allatom.add_argument(
        "--start-temperature-k", type=float,
        help="first spend --start-ps at this temperature (nothing recorded), so that runs with other "
        "seeds start from other conformations",
    )  # fmt: skip
    allatom.add_argument("--start-ps", type=float, default=0.0, help="time at --start-temperature-k, ps")
    _add_force_map(allatom)
    allatom.add_argument("-o", "--output", type=Path, required=True, help=output_help + "; resumable")
    _add_recompute(actions, output_help)


def _add_force_map(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force-map", choices=("groups", "hydrogens"), default="groups",
        help="bead force = sum over the atoms nearest the bead atom along bonds (groups, default: "
        "least noise) or over the bead atom and its hydrogens (hydrogens: datasets before groups)",
    )  # fmt: skip


def _add_recompute(actions, output_help: str) -> None:
    recompute = actions.add_parser(
        "recompute", help="all-atom trajectory without forces: forces from a force field, mapped to CG beads"
    )
    recompute.add_argument("trajectory", type=Path, help="all-atom trajectory mdtraj reads (DCD, XTC, ...)")
    recompute.add_argument("--topology", type=Path, required=True, help="PDB with the trajectory's atoms")
    source = recompute.add_mutually_exclusive_group()
    source.add_argument(
        "--forcefield", choices=sorted(FORCEFIELDS), default="amber14-gbn2", help="force field (amber14-gbn2)"
    )
    source.add_argument(
        "--system-xml",
        type=Path,
        help="serialized OpenMM System of the topology's atoms, instead of a force field",
    )
    recompute.add_argument(
        "--ignore-external-bonds", action="store_true",
        help="match templates ignoring bonds to atoms the topology lacks (stripped caps): end residues "
        "get internal-residue parameters",
    )  # fmt: skip
    recompute.add_argument("--platform", choices=("auto", *PLATFORMS), default="auto", help=PLATFORM_HELP)
    recompute.add_argument("--stride", type=int, default=1, help="keep every N-th frame (1)")
    recompute.add_argument("--mapping", choices=MAPPINGS, default="5bead", help="CG mapping (5bead)")
    recompute.add_argument("--name", help="molecule name in the dataset (default: the topology file's stem)")
    _add_force_map(recompute)
    recompute.add_argument("-o", "--output", type=Path, required=True, help=output_help + "; resumable")
    qm = actions.add_parser(
        "qm", help="quantum-chemistry energies and forces (PySCF DFT/HF, tblite xTB) per frame; resumable"
    )
    qm.add_argument("input", type=Path, help="all-atom gnnmd dataset (.h5) or a file ASE reads (.xyz)")
    qm.add_argument("-o", "--output", type=Path, required=True, help="dataset to write (progress: OUT.qm)")
    qm.add_argument(
        "--engine", choices=ENGINES, default="pyscf",
        help="label engine (pyscf; gpu4pyscf runs PySCF's methods on a CUDA GPU; tblite for xTB)",
    )  # fmt: skip
    qm.add_argument("--method", default="b3lyp", help="pyscf: hf or a functional (b3lyp); tblite: GFN2-xTB")
    qm.add_argument("--basis", default="sto-3g", help="pyscf basis set (sto-3g)")
    qm.add_argument("--charge", type=int, default=0, help="total charge, e (0)")
    qm.add_argument("--multiplicity", type=int, default=1, help="spin multiplicity 2S+1 (1)")
    qm.add_argument("--every", type=int, default=1, help="label every N-th frame (1)")
    qm.add_argument("--processes", type=int, default=1, help="worker processes on this machine (1)")
    qm.add_argument("--molecule", help="label only this molecule of a dataset (default: every molecule)")
    qm.add_argument("--topology", type=Path, help="topology (PDB) of a trajectory input (DCD, XTC, ...)")
    qm.add_argument("--max-cycle", type=int, default=100, help="SCF iterations before a frame is unconverged")


def run(args: argparse.Namespace) -> int:
    from gnnmd.data.importers import import_arrays, import_cgnet_ala2

    if args.action == "import-cgnet":
        path = import_cgnet_ala2(args.output)
    elif args.action == "allatom":
        path = generate(args)
    elif args.action == "recompute":
        path = recompute(args)
    elif args.action == "qm":
        return label_qm(args)
    else:
        from gnnmd.systems import load_system

        system = load_system(args.system)
        path = import_arrays(
            args.output, system.topology, args.coordinates, args.forces, args.length_unit, args.energy_unit,
            energies_path=args.energies,
        )  # fmt: skip
    print(f"wrote {path}")
    return 0


def label_qm(args: argparse.Namespace) -> int:
    from gnnmd.data.qm import QMSettings
    from gnnmd.data.qm_labels import label

    if args.processes < 1:
        raise ValueError(f"--processes must be at least 1, got {args.processes}")
    settings = QMSettings(
        args.engine, args.method, args.basis, args.charge, args.multiplicity, max_cycle=args.max_cycle
    )
    summary = label(
        args.input, args.output, settings, args.every, args.processes, args.molecule, args.topology
    )
    from gnnmd.distributed import rank_from_environment

    if not rank_from_environment().is_root:  # under torchrun: rank 0 speaks for the job
        return 0
    print(
        f"{args.output}: {summary['converged']} of {summary['frames']} frames converged "
        f"({summary['computed']} computed now, {summary['seconds_per_label']:.2f} s per label); "
        f"progress and per-frame records in {args.output}.qm"
        + ("" if summary["written"] else "; no frame converged, so no dataset was written")
    )
    return 0


def generate(args: argparse.Namespace) -> Path:
    """All-atom dynamics with a rich progress bar; resumes an interrupted run into the same file."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from gnnmd.data.allatom import AllAtomSettings, Generator
    from gnnmd.systems import load_system

    settings = AllAtomSettings(
        temperature_k=args.temperature_k, frame_interval_ps=args.frame_interval_ps,
        forcefield=args.forcefield, platform=resolve_platform(args.platform), seed=args.seed,
        resolution=args.resolution, timestep_fs=args.timestep_fs,
        start_temperature_k=args.start_temperature_k, start_ps=args.start_ps, force_map=args.force_map,
    )  # fmt: skip
    generator = Generator(load_system(args.system), args.output, settings)
    total = int(round(args.ns * 1000.0 / args.frame_interval_ps))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
    )
    with Progress(*columns, TimeRemainingColumn()) as bar:
        task = bar.add_task(
            f"{generator.molecule.name} all-atom ({settings.platform})",
            total=total,
            completed=generator.frames_done,
        )
        generator.run(total, lambda done, _: bar.update(task, completed=done))
    return args.output


def recompute(args: argparse.Namespace) -> Path:
    """Forces for a trajectory without them, with a rich progress bar; resumes into the same file."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from gnnmd.data.recompute import RecomputeSettings
    from gnnmd.data.recompute import recompute as run_recompute

    settings = RecomputeSettings(
        forcefield=args.forcefield, system_xml=args.system_xml,
        ignore_external_bonds=args.ignore_external_bonds, platform=resolve_platform(args.platform),
        stride=args.stride, mapping=args.mapping, force_map=args.force_map,
    )  # fmt: skip
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} frames"),
        TimeRemainingColumn(),
    )
    task = bar.add_task(f"{args.trajectory.name} forces", total=None)

    def progress(done: int, total: int | None) -> None:
        bar.start()  # only once the set-up succeeded: errors print without a bar
        bar.update(task, completed=done, total=total)

    try:
        molecule, frames = run_recompute(
            args.trajectory, args.topology, args.output, settings, args.name, progress
        )
    finally:
        bar.stop()
    print(f"{molecule}: {frames} frames of {args.trajectory} in {args.output}")
    return args.output
