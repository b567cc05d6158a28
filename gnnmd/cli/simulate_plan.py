"""What ``gnnmd simulate`` is asked to run: the run description (``run.json``), checked against
the folder's record on resume, and the aggregate summary (``summary.json``) at the end.

Times in ps at the boundary (``--ns``, ``--report-interval-ps``), counted in steps inside.
"""

from __future__ import annotations

import argparse

from gnnmd.sim import run_record
from gnnmd.units import NS_PER_PS, PS_PER_FS, SECONDS_PER_DAY


def steps_of(value_ps: float, timestep_ps: float, name: str, allow_zero: bool = False) -> int:
    """``value_ps`` in whole steps of ``timestep_ps``; ValueError (naming ``name``) below one step."""
    steps = round(value_ps / timestep_ps)
    if value_ps == 0 and allow_zero:
        return 0
    if not value_ps > 0 or steps < 1:
        raise ValueError(f"{name} {value_ps} ps is less than one {timestep_ps} ps step")
    return steps


def _systems_and_steps(args: argparse.Namespace) -> tuple[list, int]:
    """The systems named on the command line (checked against the model) and the run's steps."""
    from gnnmd.cli.options import load_systems_for_model
    from gnnmd.models import model_path, read_checkpoint

    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    if not args.dt_fs > 0:
        raise ValueError(f"--dt-fs must be positive, got {args.dt_fs}")
    names = [name for name in args.systems.split(",") if name]
    if not names:
        raise ValueError(f"no system named in {args.systems!r}")
    checkpoint = read_checkpoint(model_path(args.model))  # the model is built later, per rank
    vocabulary, metadata = checkpoint["vocabulary"], checkpoint["metadata"]
    systems = load_systems_for_model(names, vocabulary, metadata, args.coordinates)
    total = len(systems) * args.replicas
    timestep_ps = args.dt_fs * PS_PER_FS
    steps = args.steps if args.steps is not None else steps_of(args.ns / NS_PER_PS, timestep_ps, "--ns")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    for name, values in (
        ("--temperature-k", args.temperature_k),
        ("--friction-per-ps", args.friction_per_ps),
    ):
        if len(values) not in (1, total):
            raise ValueError(f"{name} has {len(values)} values; give one, or one per replica ({total})")
    return systems, steps


def report_steps(args: argparse.Namespace) -> int:
    """``--report-interval-ps`` in steps of ``--dt-fs`` (the one place it is converted)."""
    return steps_of(args.report_interval_ps, args.dt_fs * PS_PER_FS, "--report-interval-ps")


def run_plan(args: argparse.Namespace) -> dict:
    """The run description (run.json) from the command line."""
    from gnnmd.models import model_path
    from gnnmd.runfolder import file_sha256

    systems, steps = _systems_and_steps(args)
    timestep_ps = args.dt_fs * PS_PER_FS
    return {
        "schema": run_record.SCHEMA,
        "schema_version": run_record.SCHEMA_VERSION,
        "systems": [s.name for s in systems],
        "system_sources": [s.source() for s in systems],
        "system_sha256": [s.source_sha256() for s in systems],
        "replicas_per_system": args.replicas,
        "replica_systems": [s.name for s in systems for _ in range(args.replicas)],
        "model": args.model,
        "model_sha256": file_sha256(model_path(args.model)),
        "backend": args.backend,
        "seed": args.seed,
        "timestep_fs": args.dt_fs,
        "steps": steps,
        "ns": args.ns,
        "report_interval_ps": report_steps(args) * timestep_ps,
        "checkpoint_interval_ps": args.checkpoint_interval_ps,
        "health_interval": args.health_interval,
        "on_failure": args.on_failure,
        "max_temperature_factor": args.max_temperature_factor,
        "dtype": args.dtype,
        "device": args.device,
        "skin_nm": args.skin_nm,
        "thermostat_temperatures_k": args.temperature_k,
        "frictions_per_ps": args.friction_per_ps,
        "trajectory_format": args.format,
        **committee_plan(args),
        "_systems": systems,
    }


def committee_plan(args: argparse.Namespace) -> dict:
    """The committee's run.json fields: its members, interval (steps) and threshold (kJ/mol/nm)."""
    from gnnmd.models import model_path
    from gnnmd.runfolder import file_sha256

    if args.committee is None:
        if args.committee_interval is not None or args.committee_threshold is not None:
            raise ValueError("--committee-interval and --committee-threshold need --committee")
        return {"committee": None, "committee_sha256": None}
    members = [name for name in args.committee.split(",") if name]
    report = report_steps(args)
    interval = report if args.committee_interval is None else args.committee_interval
    if not 1 <= interval <= report:
        raise ValueError(
            f"--committee-interval must be 1 to {report} steps (the report interval), got {interval}"
        )
    return {
        "committee": members,
        "committee_sha256": [file_sha256(model_path(m)) for m in members],
        "committee_interval": interval,
        "committee_threshold_kj_mol_nm": args.committee_threshold,
    }


def check_output(args: argparse.Namespace, plan: dict, world_size: int) -> tuple[dict | None, dict]:
    """Rank 0, holding the folder's lock: (the run record or None for a new run, accepted changes)."""
    from gnnmd.runfolder import require_fresh

    if not args.resume:
        if args.accept_change:
            raise ValueError("--accept-change applies to --resume only")
        require_fresh(args.output, run_record.RUN_FILE, "pass --resume to continue it, or choose another -o")
        return None, {}
    record = run_record.read_record(args.output)
    asked = {**{k: v for k, v in plan.items() if not k.startswith("_")}, "world_size": world_size}
    accepted = {name for name in args.accept_change.split(",") if name}
    return record, run_record.compare(record, asked, accepted, args.output / run_record.RUN_FILE)


def summary(plan: dict, summaries: list, trained: bool, world_size: int) -> dict:
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
