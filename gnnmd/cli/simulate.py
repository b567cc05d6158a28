"""``gnnmd simulate``: Langevin dynamics of many replicas, with trajectories, logs and checkpoints.

``gnnmd simulate chignolin,engrailed --replicas 32 --ns 10 -o out/run`` runs 32
replicas of each system (64 in all, packed into one model call per step) for
10 ns each. Under ``torchrun --nproc-per-node N`` the replicas are sharded over
the N processes (:mod:`gnnmd.distributed`). ``--committee A,B`` evaluates
a committee of models on the way and logs their force disagreement
(:mod:`gnnmd.sim.committee`). See docs/simulate.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gnnmd import distributed
from gnnmd.cli.options import add_coordinates_option, add_fallback_option, add_threads_option
from gnnmd.cli.progress import print_summary, progress_bar
from gnnmd.cli.simulate_plan import check_output, report_steps, run_plan, steps_of, summary
from gnnmd.kernels import AUTO, BACKENDS, choose_backend
from gnnmd.sim import run_record
from gnnmd.sim.committee import committee_monitor, committee_summary
from gnnmd.sim.outputs import ON_FAILURE
from gnnmd.sim.reporters import FORMATS, save_topologies
from gnnmd.sim.runner import DEFAULT_SKIN_NM
from gnnmd.units import NS_PER_PS, PS_PER_FS

DEVICES = ("cpu", "cuda", "ipu")
DTYPES = ("float32", "float64")
SUMMARY_FILE = "summary.json"


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "systems", metavar="SYSTEM[,SYSTEM...]", help="shipped names, PDB paths, or a PSF with --coordinates"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--model", default="default", help="shipped model name or checkpoint path (default: default)"
    )
    parser.add_argument(
        "--backend",
        default=AUTO,
        choices=(AUTO, *BACKENDS),
        help="kernel backend (default: auto, the fastest accurate one that runs here: tabulated where its "
        "kernel is built, else reference; the run record holds the one that ran; see gnnmd.kernels)",
    )
    add_fallback_option(parser)
    add_threads_option(parser)
    add_coordinates_option(parser)
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
    parser.add_argument(
        "--accept-change", metavar="dt-fs,backend", default="",
        help="with --resume: allow these options to differ from the run's (recorded with the step at "
        "which they took effect), e.g. a smaller --dt-fs after a blow-up",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")  # fmt: skip


@contextmanager
def _owned_folder(directory: Path, info) -> Iterator[None]:
    """Rank 0 holds the run folder's lock (taken before anything is written) for the whole job."""
    from gnnmd.runfolder import RunFolderLock, claim

    lock = RunFolderLock(directory)
    distributed.on_root(lambda: claim(lock), info)
    try:
        yield
    finally:
        lock.release()


def run(args: argparse.Namespace) -> int:

    info = distributed.rank_from_environment()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if args.cuda_graph and args.device != "cuda":
        raise ValueError("--cuda-graph needs --device cuda (CUDA graphs do not exist on CPUs)")
    # The run record holds the backend that runs: a resume that would resolve `auto` otherwise is refused.
    args.backend = choose_backend(args.backend, args.device)
    if args.device == "ipu":
        _check_ipu(args)
    distributed.initialize("cpu" if args.device == "ipu" else args.device, info)
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
    from gnnmd.models import load_model
    from gnnmd.nn.backends import implementation_of
    from gnnmd.threads import apply_threads

    plan = run_plan(args)
    plan.update(apply_threads(args.threads))
    # Everything that can be refused is checked before the folder is touched.
    model = load_model(args.model, backend=args.backend, allow_fallback=args.allow_fallback)
    plan["implementation"] = implementation_of(model, args.device)
    committee = None
    if plan["committee"] is not None:
        committee = committee_monitor(plan, plan["_systems"], info.rank)
    with _owned_folder(args.output, info):
        record, changes = distributed.on_root(lambda: check_output(args, plan, info.world_size), info)
        return _simulate(_Job(args, info, plan, record, changes), model, committee)


@dataclass
class _Job:
    """One invocation on one rank: the command line, this rank, the plan, and on resume the run
    record and the changes it accepted (None and {} for a new run)."""

    args: argparse.Namespace
    info: distributed.RankInfo
    plan: dict
    record: dict | None
    changes: dict


def _simulate(job: _Job, model, committee) -> int:
    """Run this rank's replicas."""
    from gnnmd.models import is_trained
    from gnnmd.sim.checkpoint import load_checkpoint

    systems = job.plan.pop("_systems")
    options = _output_options(job.args, job.info)
    mine = distributed.shard(len(systems) * job.args.replicas, job.info)
    # A resumed run killed before its first checkpoint starts again from step 0: nothing was computed.
    document = None
    if job.record is not None and options.checkpoint_path.exists():
        document = load_checkpoint(options.checkpoint_path)
        run_record.check_checkpoint(options.checkpoint_path, document, job.record, mine)
        mine = [int(i) for i in document["replica_ids"]]  # dropped replicas stay dropped
    runner = _runner(job, model, systems, mine)
    simulation = _simulation(job, runner, options, committee, document, systems)
    gathered = distributed.gather_to_root(_advance(job, simulation), job.info)
    if job.info.is_root:
        _write_summary(job, gathered, is_trained(model))
    return 0


def _output_options(args: argparse.Namespace, info):
    """Where and how often this rank writes (its own checkpoint file under torchrun)."""
    from gnnmd.sim.outputs import OutputOptions

    timestep_ps = args.dt_fs * PS_PER_FS
    return OutputOptions(
        directory=args.output,
        report_interval=report_steps(args),
        checkpoint_interval=steps_of(
            args.checkpoint_interval_ps, timestep_ps, "--checkpoint-interval-ps", allow_zero=True
        ),
        health_interval=args.health_interval,
        trajectory_format=args.format,
        on_failure=args.on_failure,
        max_temperature_factor=args.max_temperature_factor,
        checkpoint_name="checkpoint.pt" if not info.distributed else f"checkpoint_rank{info.rank}.pt",
    )


def _runner(job: _Job, model, systems: list, mine: list[int]):
    """The replica runner of this rank's global replicas ``mine``."""
    from gnnmd.engine import LangevinSettings
    from gnnmd.sim.runner import ReplicaRunner

    args = job.args
    system_of = [systems[i // args.replicas] for i in mine]

    def per_replica(values: list[float]) -> list[float]:
        return [values[0] if len(values) == 1 else values[i] for i in mine]

    forces, device = None, str(distributed.local_device(args.device, job.info))
    if args.device == "ipu":  # forces on the IPU, integration on the host (docs/ipu.md)
        from gnnmd.ipu.poptorch_backend import IPUForces

        forces, device = IPUForces(executor="ipu"), "cpu"
    return ReplicaRunner(
        model, [s.topology for s in system_of],
        np.concatenate([s.positions_nm for s in system_of]),
        LangevinSettings(args.dt_fs, args.temperature_k[0], args.friction_per_ps[0]),
        device=device, dtype=getattr(torch, args.dtype), seed=args.seed,
        thermostat_temperatures_k=per_replica(args.temperature_k),
        frictions_per_ps=per_replica(args.friction_per_ps),
        skin_nm=args.skin_nm, replica_ids=mine, cuda_graph=args.cuda_graph, forces=forces,
    )  # fmt: skip


def _simulation(job: _Job, runner, options, committee, document: dict | None, systems: list):
    """A new Simulation (its run record and topologies written first), or the checkpoint's, resumed."""
    from gnnmd.engine.bench import provenance
    from gnnmd.models import is_trained
    from gnnmd.sim.simulation import Simulation

    info, record = job.info, job.record
    run_id = record["run_id"] if record is not None else distributed.on_root(run_record.new_run_id, info)
    extra = {"world_size": info.world_size, "run_id": run_id}
    if document is not None:
        accept = ("timestep_fs",) if "timestep_fs" in job.changes else ()
        return Simulation.resume(runner, options, document, committee, extra, accept_changes=accept)
    if record is None:  # a new run: its record exists before any of its outputs
        fresh = {**job.plan, "world_size": info.world_size, "run_id": run_id, "command": sys.argv,
                 "provenance": provenance(), "model_trained": is_trained(runner.model),
                 "noise": runner.noise_description()}  # fmt: skip
        distributed.on_root(lambda: run_record.write_record(job.args.output, fresh), info)
        distributed.on_root(lambda: save_topologies(job.args.output, systems), info)
    return Simulation(runner, options, committee=committee, extra=extra, overwrite=True)


def _advance(job: _Job, simulation):
    """Run to the planned end (in ns when asked in ns: the time step may have changed on resume)."""
    from gnnmd.engine.bench import provenance

    args, info, plan = job.args, job.info, job.plan
    runner = simulation.runner
    until = plan["steps"]
    if args.ns is not None:
        remaining_ps = args.ns / NS_PER_PS - simulation.time_ps()
        until = runner.steps_done + max(0, round(remaining_ps / (args.dt_fs * PS_PER_FS)))
    if job.record is not None:
        invocation = {"command": sys.argv, "provenance": provenance()}
        asked = {**plan, "steps": until}
        done, time_ps = runner.steps_done, simulation.time_ps()
        updated = run_record.resumed(job.record, asked, job.changes, done, time_ps, invocation)
        distributed.on_root(lambda: run_record.write_record(args.output, updated), info)
    total = len(plan["replica_systems"])
    label = f"{total} replicas" + (f", rank 0 of {info.world_size}" if info.distributed else "")
    with progress_bar(label, enabled=info.is_root and not args.no_progress) as progress:
        try:
            summary = simulation.run(until, progress)
        finally:
            simulation.close()
    for line in simulation.warnings:
        print(f"gnnmd simulate: rank {info.rank}: {line}", file=sys.stderr)
    return summary


def _write_summary(job: _Job, gathered: list, trained: bool) -> None:
    """Rank 0: ``summary.json`` (aggregate throughput over ranks), printed too."""
    from gnnmd.sim.checkpoint import atomic_write_bytes

    report = summary(job.plan, gathered, trained, job.info.world_size)
    if job.plan["committee"] is not None:
        report["committee"] = committee_summary(job.plan, gathered)
        report["wall_time_includes"] = report["wall_time_includes"].replace(
            "health checks,", "health checks, committee evaluations,"
        )
    text = json.dumps(report, indent=2) + "\n"
    atomic_write_bytes(job.args.output / SUMMARY_FILE, lambda f: f.write(text.encode()))
    print_summary(report, job.args.output)
