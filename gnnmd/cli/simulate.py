"""``gnnmd simulate``: Langevin dynamics of many replicas, with trajectories, logs and checkpoints.

``gnnmd simulate chignolin,engrailed --replicas 32 --ns 10 -o out/run`` runs 32
replicas of each system (64 in all, packed into one model call per step) for
10 ns each. Under ``torchrun --nproc-per-node N`` the replicas are sharded over
the N processes (:mod:`gnnmd.sim.distributed`). ``--committee A,B`` evaluates
a committee of models on the way and logs their force disagreement
(:mod:`gnnmd.sim.committee`). See docs/simulate.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gnnmd.errors import CheckpointError
from gnnmd.kernels import BACKENDS
from gnnmd.sim.reporters import FORMATS
from gnnmd.sim.runner import DEFAULT_SKIN_NM
from gnnmd.sim.simulation import ON_FAILURE
from gnnmd.units import NS_PER_PS, PS_PER_FS, SECONDS_PER_DAY

DEVICES = ("cpu", "cuda", "ipu")
DTYPES = ("float32", "float64")
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
#: run.json fields that a resumed run must repeat exactly.
_RESUME_FIELDS = (
    "systems", "replicas_per_system", "model", "seed", "timestep_fs", "dtype", "skin_nm",
    "thermostat_temperatures_k", "frictions_per_ps", "world_size", "trajectory_format", "committee",
)  # fmt: skip


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("systems", metavar="SYSTEM[,SYSTEM...]", help="shipped system names or PDB paths")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--model", default="default", help="shipped model name or checkpoint path (default: default)"
    )
    parser.add_argument(
        "--backend",
        default="reference",
        choices=BACKENDS,
        help="kernel backend (default: reference; see gnnmd.kernels)",
    )
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each system (default: 1)")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--ns", type=float, help="simulated time per replica, ns")
    length.add_argument("--steps", type=int, help="number of steps (instead of --ns)")
    parser.add_argument("--dt-fs", type=float, default=4.0, help="time step, fs (default: 4)")
    parser.add_argument(
        "--temperature-k",
        type=_floats,
        default=[300.0],
        help="thermostat temperature, K: one value, or one per replica (default: 300)",
    )
    parser.add_argument(
        "--friction-per-ps",
        type=_floats,
        default=[1.0],
        help="Langevin friction, 1/ps: one value, or one per replica (default: 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and noise (default: 0)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="torch device, or ipu: forces on a Graphcore IPU via PopTorch, float32, "
                        "integration on the host (docs/ipu.md) (default: cpu)")  # fmt: skip
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="precision (default: float32)")
    parser.add_argument(
        "--skin-nm",
        type=float,
        default=DEFAULT_SKIN_NM,
        help=f"Verlet skin, nm; 0 filters all pairs every step (default: {DEFAULT_SKIN_NM})",
    )
    parser.add_argument(
        "--report-interval-ps",
        type=float,
        default=10.0,
        help="time between trajectory frames and log rows, ps (default: 10)",
    )
    parser.add_argument(
        "--checkpoint-interval-ps",
        type=float,
        default=1000.0,
        help="time between checkpoints, ps; 0 only at the end (default: 1000)",
    )
    parser.add_argument(
        "--health-interval",
        type=int,
        default=100,
        help="steps between health checks of every replica (default: 100)",
    )
    parser.add_argument("--format", choices=FORMATS, default="dcd", help="trajectory format (default: dcd)")
    parser.add_argument(
        "--on-failure",
        choices=ON_FAILURE,
        default="stop",
        help="a replica blows up: stop the run, or drop it and go on (default: stop)",
    )
    parser.add_argument(
        "--max-temperature-factor",
        type=float,
        default=10.0,
        help="a replica hotter than this times its thermostat temperature fails (default: 10)",
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="capture each step in CUDA graphs (CUDA only)"
    )
    parser.add_argument(
        "--committee", metavar="MODEL,MODEL[,...]",
        help="models (names or checkpoints) whose force disagreement is logged to flag extrapolation; "
        "include --model's to measure the driving forces' uncertainty (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--committee-interval", type=int,
        help="steps between committee evaluations, at most the report interval; every log row gets one "
        "(default: the report interval)",
    )  # fmt: skip
    parser.add_argument(
        "--committee-threshold", type=float,
        help="warn about a replica whose RMS force disagreement exceeds this, kJ/mol/nm (default: never)",
    )  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")  # fmt: skip


def _steps_of(value_ps: float, timestep_ps: float, name: str, allow_zero: bool = False) -> int:
    steps = round(value_ps / timestep_ps)
    if value_ps == 0 and allow_zero:
        return 0
    if not value_ps > 0 or steps < 1:
        raise ValueError(f"{name} {value_ps} ps is less than one {timestep_ps} ps step")
    return steps


def _plan(args: argparse.Namespace) -> dict:
    """The run description (run.json) from the command line."""
    from gnnmd.systems import load_system

    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    if not args.dt_fs > 0:
        raise ValueError(f"--dt-fs must be positive, got {args.dt_fs}")
    names = [name for name in args.systems.split(",") if name]
    if not names:
        raise ValueError(f"no system named in {args.systems!r}")
    systems = [load_system(name) for name in names]
    total = len(systems) * args.replicas
    timestep_ps = args.dt_fs * PS_PER_FS
    steps = args.steps if args.steps is not None else _steps_of(args.ns / NS_PER_PS, timestep_ps, "--ns")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    for name, values in (
        ("--temperature-k", args.temperature_k),
        ("--friction-per-ps", args.friction_per_ps),
    ):
        if len(values) not in (1, total):
            raise ValueError(f"{name} has {len(values)} values; give one, or one per replica ({total})")
    return {
        "schema": "gnnmd-simulate",
        "schema_version": 1,
        "systems": [s.name for s in systems],
        "system_sources": [str(s.pdb_path) for s in systems],
        "replicas_per_system": args.replicas,
        "replica_systems": [s.name for s in systems for _ in range(args.replicas)],
        "model": args.model,
        "backend": args.backend,
        "seed": args.seed,
        "timestep_fs": args.dt_fs,
        "steps": steps,
        "dtype": args.dtype,
        "device": args.device,
        "skin_nm": args.skin_nm,
        "thermostat_temperatures_k": args.temperature_k,
        "frictions_per_ps": args.friction_per_ps,
        "trajectory_format": args.format,
        **_committee_plan(args, timestep_ps),
        "_systems": systems,
    }


def _committee_plan(args: argparse.Namespace, timestep_ps: float) -> dict:
    """The committee's run.json fields: its members, interval (steps) and threshold (kJ/mol/nm)."""
    if args.committee is None:
        if args.committee_interval is not None or args.committee_threshold is not None:
            raise ValueError("--committee-interval and --committee-threshold need --committee")
        return {"committee": None}
    members = [name for name in args.committee.split(",") if name]
    report = _steps_of(args.report_interval_ps, timestep_ps, "--report-interval-ps")
    interval = report if args.committee_interval is None else args.committee_interval
    if not 1 <= interval <= report:
        raise ValueError(
            f"--committee-interval must be 1 to {report} steps (the report interval), got {interval}"
        )
    return {"committee": members, "committee_interval": interval,
            "committee_threshold_kj_mol_nm": args.committee_threshold}  # fmt: skip


def _check_output(args: argparse.Namespace, plan: dict, world_size: int) -> None:
    run_file = args.output / RUN_FILE
    if not args.resume:
        if run_file.exists():
            raise ValueError(f"{args.output} already holds a run ({RUN_FILE}); pass --resume to continue it, "
                             "or choose another -o")  # fmt: skip
        return
    if not run_file.is_file():
        raise CheckpointError(f"{run_file}: missing; nothing to resume in {args.output}")
    recorded = json.loads(run_file.read_text())
    asked = {**{k: v for k, v in plan.items() if not k.startswith("_")}, "world_size": world_size}
    for key in _RESUME_FIELDS:
        if recorded.get(key) != asked.get(key):
            raise CheckpointError(
                f"{run_file}: field {key!r} is {recorded.get(key)!r} but this command asks for "
                f"{asked.get(key)!r}; resume with the options of the original run"
            )


def run(args: argparse.Namespace) -> int:
    from gnnmd.sim import distributed

    info = distributed.rank_from_environment()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if args.cuda_graph and args.device != "cuda":
        raise ValueError("--cuda-graph needs --device cuda (CUDA graphs do not exist on CPUs)")
    if args.device == "ipu":
        _check_ipu(args)
    distributed.initialize(info, args.device)
    try:
        return _run(args, info)
    finally:
        distributed.finalize()


def _check_ipu(args: argparse.Namespace) -> None:
    """--device ipu needs PopTorch (else IPUUnavailableError: what is missing), float32, reference kernels."""
    from gnnmd.ipu.poptorch_backend import require_poptorch

    require_poptorch()
    if args.dtype != "float32":
        raise ValueError("--device ipu needs --dtype float32 (IPUs have no float64)")
    if getattr(args, "backend", "reference") != "reference":
        raise ValueError("--device ipu runs the reference kernels only (--backend reference)")


def _run(args: argparse.Namespace, info) -> int:
    from gnnmd.models import is_trained, load_model
    from gnnmd.sim import distributed
    from gnnmd.sim.benchmark import provenance
    from gnnmd.sim.checkpoint import atomic_write_bytes, load_checkpoint
    from gnnmd.sim.integrators import LangevinSettings
    from gnnmd.sim.runner import ReplicaRunner
    from gnnmd.sim.simulation import OutputOptions, Simulation

    plan = _plan(args)
    _check_output(args, plan, info.world_size)
    distributed.broadcast_from_root(None, info)  # every rank has checked before rank 0 writes run.json
    systems = plan.pop("_systems")
    model = load_model(args.model, backend=args.backend)
    committee = _committee(plan, systems, info) if plan["committee"] is not None else None
    timestep_ps = args.dt_fs * PS_PER_FS
    total = len(systems) * args.replicas
    mine = distributed.shard(total, info)
    options = OutputOptions(
        directory=args.output,
        report_interval=_steps_of(args.report_interval_ps, timestep_ps, "--report-interval-ps"),
        checkpoint_interval=_steps_of(
            args.checkpoint_interval_ps, timestep_ps, "--checkpoint-interval-ps", True
        ),
        health_interval=args.health_interval,
        trajectory_format=args.format,
        on_failure=args.on_failure,
        max_temperature_factor=args.max_temperature_factor,
        checkpoint_name="checkpoint.pt" if not info.distributed else f"checkpoint_rank{info.rank}.pt",
    )
    document = load_checkpoint(options.checkpoint_path) if args.resume else None
    if document is not None:
        mine = [int(i) for i in document["replica_ids"]]  # dropped replicas stay dropped
    system_of = [systems[i // args.replicas] for i in mine]

    def per_replica(values: list[float]) -> list[float]:
        return [values[0] if len(values) == 1 else values[i] for i in mine]

    if info.is_root:
        args.output.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            record = {**plan, "world_size": info.world_size, "command": sys.argv, "provenance": provenance()}
            record["model_trained"] = is_trained(model)
        else:  # the run may be extended: record the new length and how it was resumed
            record = json.loads((args.output / RUN_FILE).read_text())
            record["steps"] = plan["steps"]
            for key in ("committee_interval", "committee_threshold_kj_mol_nm"):  # may change on resume
                if key in plan:
                    record[key] = plan[key]
            record.setdefault("resumed", []).append({"command": sys.argv, "provenance": provenance()})
        text = json.dumps(record, indent=2) + "\n"
        atomic_write_bytes(args.output / RUN_FILE, lambda f: f.write(text.encode()))
    distributed.broadcast_from_root(None, info)  # the folder exists before any rank writes into it
    runner_class, device = ReplicaRunner, distributed.device_for(args.device, info)
    if args.device == "ipu":  # forces on the IPU, integration on the host (docs/ipu.md)
        from gnnmd.ipu.poptorch_backend import IPUReplicaRunner

        runner_class, device = IPUReplicaRunner, "cpu"
    runner = runner_class(
        model, [s.topology for s in system_of],
        np.concatenate([s.positions_nm for s in system_of]),
        LangevinSettings(args.dt_fs, args.temperature_k[0], args.friction_per_ps[0]),
        device=device, dtype=getattr(torch, args.dtype), seed=args.seed,
        thermostat_temperatures_k=per_replica(args.temperature_k),
        frictions_per_ps=per_replica(args.friction_per_ps),
        skin_nm=args.skin_nm, replica_ids=mine, cuda_graph=args.cuda_graph,
    )  # fmt: skip
    if document is not None:
        simulation = Simulation.resume(runner, options, document, committee)
    else:
        simulation = Simulation(runner, options, committee=committee)
    trained = is_trained(model)
    label = f"{total} replicas" + (f", rank 0 of {info.world_size}" if info.distributed else "")
    with _progress(label, enabled=info.is_root and not args.no_progress) as progress:
        try:
            summary = simulation.run(plan["steps"], progress, extra={"world_size": info.world_size})
        finally:
            simulation.close()
    for line in simulation.warnings:
        print(f"gnnmd simulate: rank {info.rank}: {line}", file=sys.stderr)
    gathered = distributed.gather_to_root(summary, info)
    if info.is_root:
        report = _summary(plan, gathered, trained, info.world_size)
        if plan["committee"] is not None:
            report["committee"] = _committee_summary(plan, gathered)
            report["wall_time_includes"] = report["wall_time_includes"].replace(
                "health checks,", "health checks, committee evaluations,"
            )
        text = json.dumps(report, indent=2) + "\n"
        atomic_write_bytes(args.output / SUMMARY_FILE, lambda f: f.write(text.encode()))
        _print_summary(report, args.output)
    return 0


def _summary(plan: dict, summaries: list, trained: bool, world_size: int) -> dict:
    """Aggregate throughput over ranks: total simulated ns over the slowest rank's wall time."""
    wall = max(s.wall_seconds for s in summaries)
    simulated = sum(s.simulated_ns for s in summaries)
    dropped = {str(k): v for s in summaries for k, v in s.dropped.items()}
    return {
        "systems": plan["systems"],
        "replicas": len(plan["replica_systems"]),
        "replicas_at_end": sum(s.replicas_at_end for s in summaries),
        "steps_this_invocation": max(s.steps for s in summaries),
        "timestep_fs": plan["timestep_fs"],
        "world_size": world_size,
        "wall_seconds": wall,
        "simulated_ns": simulated,
        "ns_per_day": simulated * SECONDS_PER_DAY / wall if wall > 0 else 0.0,
        "ns_per_day_per_rank": [s.ns_per_day for s in summaries],
        "dropped": dropped,
        "model": plan["model"],
        "model_trained": trained,
        "wall_time_includes": "stepping, health checks, output writing and checkpoints (not setup)",
    }


def _committee(plan: dict, systems: list, info):
    """The committee monitor of this rank; its members are checked against the run's systems first."""
    from gnnmd.models import load_model
    from gnnmd.nn.committee import Committee
    from gnnmd.sim.committee import CommitteeMonitor

    # Evaluated once per report at most: the reference kernels, whatever --backend drives the run.
    committee = Committee([load_model(name) for name in plan["committee"]], plan["committee"])
    committee.pack([s.topology for s in systems])

    def warn(line: str) -> None:
        print(f"gnnmd simulate: rank {info.rank}: warning: {line}", file=sys.stderr)

    return CommitteeMonitor(
        committee, plan["committee_interval"], plan["committee_threshold_kj_mol_nm"], warn
    )


def _committee_summary(plan: dict, summaries: list) -> dict:
    """Every replica's largest force disagreement (kJ/mol/nm) over the run, and those above the threshold."""
    peaks = {replica: peak for s in summaries for replica, peak in (s.committee or {}).items()}
    threshold = plan["committee_threshold_kj_mol_nm"]
    above = [] if threshold is None else [r for r, peak in sorted(peaks.items()) if peak["rms"] > threshold]
    return {
        "members": plan["committee"],
        "interval_steps": plan["committee_interval"],
        "threshold_kj_mol_nm": threshold,
        "max_rms_kj_mol_nm": {str(r): peak["rms"] for r, peak in sorted(peaks.items())},
        "step_of_max_rms": {str(r): peak["rms_step"] for r, peak in sorted(peaks.items())},
        "max_bead_kj_mol_nm": {str(r): peak["max"] for r, peak in sorted(peaks.items())},
        "above_threshold": above,
    }


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator:
    """A rich progress bar with live ns/day and ETA; yields the callback for Simulation.run."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  {task.fields[rate]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(label, total=None, rate="")

        def update(done: int, until: int, ns_per_day: float) -> None:
            bar.update(task, completed=done, total=until, rate=f"{ns_per_day:,.1f} ns/day")

        yield update


def _print_summary(report: dict, directory: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gnnmd simulate")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("systems", ", ".join(report["systems"])),
        ("replicas (at end)", f"{report['replicas']} ({report['replicas_at_end']})"),
        ("time step", f"{report['timestep_fs']:g} fs"),
        ("processes", str(report["world_size"])),
        ("simulated (all replicas)", f"{report['simulated_ns']:.4g} ns"),
        ("wall time", f"{report['wall_seconds']:.1f} s"),
        ("ns/day (aggregate)", f"{report['ns_per_day']:.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    if not report["model_trained"]:
        console.print(
            f"model {report['model']!r}: UNTRAINED (priors from native structures, seeded random network)"
        )
    for replica, reason in report["dropped"].items():
        console.print(f"replica {replica} dropped: {reason}")
    committee = report.get("committee")
    if committee is not None and committee["max_rms_kj_mol_nm"]:
        rms = committee["max_rms_kj_mol_nm"]
        worst = max(rms, key=rms.get)
        step = committee["step_of_max_rms"][worst]
        console.print(f"committee of {len(committee['members'])}: largest RMS force disagreement "
                      f"{rms[worst]:.1f} kJ/mol/nm (replica {worst}, step {step})")  # fmt: skip
        if committee["above_threshold"]:
            console.print(f"replicas above the committee threshold: {committee['above_threshold']}")
    console.print(f"outputs in {directory}")
