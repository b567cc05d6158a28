"""``gnnmd bench``: ns/day over a matrix of systems x replicas x engines x backends x devices.

Every option that names an axis takes a comma-separated list, and every
combination is timed (OpenMM's benchmark script does the same)::

    gnnmd bench --system chignolin,engrailed --replicas 1,8,64 --json out/bench.json --plot out/bench.png

``--engine replica-runner`` (default) steps the replicas with gnnmd's batched
runner; ``--engine openmm`` puts them in one OpenMM System (one force call per
step, the model seeing R graphs) and also reports the force route's overhead.
``--device ipu`` runs the forces on a Graphcore IPU through PopTorch (static-shape
packs, docs/ipu.md); without PopTorch it stops with what is missing.
Warm-up steps (and CUDA-graph capture) are not timed; the device is
synchronised around the timed steps. One combination prints one metric per
row; several print one row per combination, with the speed-up of R replicas
over R sequential single-replica runs when the matrix has R = 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table

from gnnmd.cli.options import (
    add_coordinates_option,
    add_fallback_option,
    add_langevin_options,
    add_threads_option,
    langevin_settings,
)
from gnnmd.kernels import BACKENDS
from gnnmd.sim.runner import DEFAULT_SKIN_NM

DEVICES = ("cpu", "cuda", "ipu")
DTYPES = ("float32", "float64")
ENGINES = ("replica-runner", "openmm")
OPENMM_ROUTES = ("torch", "python")
OPENMM_PLATFORMS = ("Reference", "CPU", "CUDA")
SWITCH = ("off", "on")


def _list(kind: Callable[[str], object], allowed: tuple[str, ...] | None = None) -> Callable[[str], list]:
    """An argparse type for comma-separated values of ``kind``, each one of ``allowed`` if given."""

    def parse(text: str) -> list:
        values = []
        for item in (part.strip() for part in text.split(",")):
            if allowed is not None and item not in allowed:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(allowed)}")
            try:
                values.append(kind(item))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item!r} is not a valid value") from None
        return list(dict.fromkeys(values))  # keep order, drop repeats

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def axis(name: str, kind, default, allowed, text: str) -> None:
        parser.add_argument(name, type=_list(kind, allowed), default=default, help=text)

    axis(
        "--system",
        str,
        ["chignolin"],
        None,
        "shipped system names or PDB paths, comma-separated (default: chignolin)",
    )
    axis("--replicas", int, [64], None, "replica counts stepped together, comma-separated (default: 64)")
    axis(
        "--engine",
        str,
        ["replica-runner"],
        ENGINES,
        "replica-runner (gnnmd's batched runner) and/or openmm (one OpenMM System of R replicas) "
        "(default: replica-runner)",
    )
    axis("--backend", str, ["reference"], BACKENDS, "kernel backends (default: reference)")
    add_fallback_option(parser)
    add_threads_option(parser)
    add_coordinates_option(parser)
    axis("--device", str, ["cpu"], DEVICES,
         "devices; ipu: Graphcore IPU via PopTorch, replica runner, float32 (default: cpu)")  # fmt: skip
    axis("--dtype", str, ["float32"], DTYPES, "precisions (default: float32)")
    axis(
        "--skin-nm",
        float,
        [DEFAULT_SKIN_NM],
        None,
        f"replica runner's Verlet skins in nm, 0 = filter all pairs every step (default: {DEFAULT_SKIN_NM})",
    )
    axis("--cuda-graph", str, ["off"], SWITCH, "replica runner on CUDA: off and/or on (default: off)")
    parser.add_argument(
        "--model", default="default", help="shipped model name or checkpoint path (default: default)"
    )
    parser.add_argument("--steps", type=int, default=100, help="timed steps (default: 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps (default: 10)")
    add_langevin_options(parser)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--plot", type=Path, help="also write a PNG of ns/day against replicas to this path")
    parser.add_argument(
        "--route",
        choices=OPENMM_ROUTES,
        default="torch",
        help="with --engine openmm: torch (TorchForce) or python (PythonForce) (default: torch)",
    )
    parser.add_argument(
        "--platform", choices=OPENMM_PLATFORMS, default=None,
        help="with --engine openmm: OpenMM platform (default: Reference for --device cpu, "
        "the cheapest host of a System whose forces are all the model's; CUDA for --device cuda); "
        "--dtype float64 selects double precision, float32 mixed",
    )  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One combination of the matrix."""

    system: str
    replicas: int
    engine: str
    backend: str
    device: str
    dtype: str
    skin_nm: float | None
    cuda_graph: bool


def expand(args: argparse.Namespace) -> tuple[list[Case], list[str]]:
    """Every runnable combination (replica counts ascending per system and engine), and those skipped."""
    cases, skipped = [], []
    # Replica counts outside the runner options: variants of one size run back to back (fairer
    # comparisons on a busy machine) and sizes grow through the run (the CPU peak RSS is cumulative).
    product = itertools.product(args.system, args.engine, args.backend, args.device, args.dtype,
                                sorted(args.replicas), args.skin_nm, args.cuda_graph)  # fmt: skip
    for system, engine, backend, device, dtype, replicas, skin, graph in product:
        if device == "ipu" and (engine == "openmm" or dtype == "float64" or backend != "reference"):
            skipped.append(f"{system} x{replicas} {engine} {backend} ipu {dtype}: the IPU runs the replica "
                           "runner, reference kernels, float32")  # fmt: skip
            continue
        if engine == "openmm" or device == "ipu":  # the runner's own options do not apply: one case
            skin, graph = None, "off"
        elif graph == "on" and device != "cuda":
            skipped.append(f"{system} x{replicas} {engine} {device}: CUDA graphs need --device cuda")
            continue
        case = Case(system, replicas, engine, backend, device, dtype, skin, graph == "on")
        if case not in cases:
            cases.append(case)
    return cases, skipped


def _validate(args: argparse.Namespace) -> None:
    if min(args.replicas) < 1:
        raise ValueError(f"--replicas must be at least 1, got {min(args.replicas)}")
    if min(args.skin_nm) < 0:
        raise ValueError(f"--skin-nm must be >= 0 nm, got {min(args.skin_nm)}")
    if "openmm" not in args.engine and (args.platform is not None or args.route != "torch"):
        raise ValueError("--route and --platform apply to --engine openmm only")
    if "ipu" in args.device:
        from gnnmd.ipu.poptorch_backend import require_poptorch

        require_poptorch()  # IPUUnavailableError: what is missing and how to get it
    if "cuda" in args.device and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if "on" in args.cuda_graph and "cuda" not in args.device:
        raise ValueError("--cuda-graph on needs --device cuda (CUDA graphs do not exist on CPUs)")


def run(args: argparse.Namespace) -> int:
    from gnnmd.cli.options import load_systems_for_model
    from gnnmd.engine.bench import report
    from gnnmd.kernels import resolve_backend
    from gnnmd.models import load_model
    from gnnmd.nn.backends import use_backend
    from gnnmd.threads import apply_threads

    _validate(args)
    for backend in args.backend:
        resolve_backend(backend)
    threads = apply_threads(args.threads)
    reference = load_model(args.model)
    # Converted once per backend (tabulating takes seconds), shared by every case.
    models = {backend: use_backend(reference, backend, args.allow_fallback) for backend in args.backend}
    names = list(args.system)
    loaded = load_systems_for_model(names, reference.vocabulary, reference.metadata, args.coordinates)
    systems = dict(zip(args.system, loaded, strict=True))
    cases, skipped = expand(args)
    measured = []
    for case in cases:
        measure = measure_replica_runner if case.engine == "replica-runner" else measure_openmm_case
        measured.append(measure(case, args, models[case.backend], systems[case.system]))
    results = [result for result, _ in measured]
    for result in results:
        result.threads, result.thread_policy = threads["threads"], threads["thread_policy"]
    _attach_speedups(results)
    if len(measured) == 1:
        result, extra = measured[0]
        print_result(result, **extra.get("print", {}))
    else:
        print_matrix(results, skipped)
    document = report(results)
    for row, (_, extra) in zip(document["benchmarks"], measured, strict=True):
        row.update(extra.get("json", {}))
    if skipped:
        document["skipped"] = skipped
    write_json(args.json, document)
    if args.plot:
        from gnnmd.sim.plots import plot_ns_per_day

        print(f"wrote {plot_ns_per_day(results, args.plot)}")
    return 0


def measure_replica_runner(case: Case, args: argparse.Namespace, model, system) -> tuple:
    """Time ``case`` in gnnmd's replica runner; returns (BenchResult, extras)."""
    from gnnmd.models import is_trained
    from gnnmd.sim import ReplicaRunner
    from gnnmd.sim.benchmark import measure

    if case.device == "ipu":
        return _measure_ipu(case, args, model, system)
    settings = langevin_settings(args)
    runner = ReplicaRunner.replicas_of(
        model, system, case.replicas, settings=settings, device=case.device,
        dtype=getattr(torch, case.dtype), seed=args.seed, skin_nm=case.skin_nm, cuda_graph=case.cuda_graph,
    )  # fmt: skip
    labels = {"system": system.name, "backend": case.backend, "model": args.model,
              "model_trained": is_trained(model)}  # fmt: skip
    result = measure(runner, args.steps, args.warmup, labels)
    del runner
    return result, {}


def _measure_ipu(case: Case, args: argparse.Namespace, model, system) -> tuple:
    """Time ``case`` with the forces on an IPU (static-shape packs, PopTorch); the integrator on the host."""
    from gnnmd.ipu.poptorch_backend import IPUForces
    from gnnmd.models import is_trained
    from gnnmd.sim import ReplicaRunner
    from gnnmd.sim.benchmark import measure

    runner = ReplicaRunner.replicas_of(model, system, case.replicas, settings=langevin_settings(args),
                                       seed=args.seed, forces=IPUForces(executor="ipu"))  # fmt: skip
    labels = {"system": system.name, "backend": case.backend, "model": args.model,
              "model_trained": is_trained(model)}  # fmt: skip
    result = measure(runner, args.steps, args.warmup, labels)  # compiled in the runner's constructor
    result.device = "ipu"
    packing = runner.provider.packing_summary()
    runner.release()
    text = f"{packing['packs']} x {packing['max_nodes']} nodes, {packing['node_efficiency']:.1%} used"
    return result, {"json": {"packing": packing}, "print": {"title": "gnnmd bench (replica runner, IPU)",
                                                            "extra_rows": [("packs", text)]}}  # fmt: skip


def measure_openmm_case(case: Case, args: argparse.Namespace, model, system) -> tuple:
    """Time ``case`` as R replicas in one OpenMM System; ns/day and the route's overhead."""
    from gnnmd.openmm.benchmark import OpenMMBenchRequest, measure_openmm
    from gnnmd.openmm.platforms import resolve_platform

    platform = args.platform or ("CUDA" if case.device == "cuda" else "Reference")
    spec = resolve_platform(platform, "double" if case.dtype == "float64" else "mixed")
    request = OpenMMBenchRequest(
        system=system, model=model, model_name=args.model,
        route=args.route, replicas=case.replicas, spec=spec,
        settings=langevin_settings(args),
        steps=args.steps, warmup_steps=args.warmup, seed=args.seed,
    )  # fmt: skip
    result, overhead = measure_openmm(request)
    rows = [
        ("OpenMM platform", spec.describe()),
        ("model alone, ms/evaluation", f"{overhead['model_ms_per_evaluation']:.1f}"),
        ("route overhead, ms/step", f"{overhead['route_overhead_ms_per_step']:.1f}"),
    ]
    title = f"gnnmd bench (OpenMM, {result.route}, {result.backend} kernels)"
    return result, {"json": overhead, "print": {"title": title, "extra_rows": rows}}


def _attach_speedups(results: list) -> None:
    """Set speedup_vs_single_replica where the same case was also timed with 1 replica."""
    from gnnmd.sim.plots import series_label

    single = {series_label(r): r.ns_per_day for r in results if r.replicas == 1}
    for result in results:
        base = single.get(series_label(result))
        result.speedup_vs_single_replica = result.ns_per_day / base if base else None


def write_json(path: Path | None, document: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {path}")


def _attributes(result) -> dict[str, str]:
    """What distinguishes a case, as short texts (the replica count and the system apart)."""
    engine = f"{result.engine}/{result.route}" if result.route else result.engine
    implementation = f" ({result.implementation})" if result.implementation else ""
    values = {
        "engine": engine.replace("replica-runner", "runner"),
        "backend": f"{result.backend}{implementation}",
        "device": f"{result.device} {result.dtype}",
        "skin": f"skin {result.skin_nm:g}" if result.skin_nm is not None else "",
        "graph": "graph" if result.cuda_graph else "",
    }
    return {key: value for key, value in values.items() if value}


def print_matrix(results: list, skipped: list[str]) -> None:
    """One row per case, readable at 80 columns: what all cases share goes under the table."""
    attributes = [_attributes(r) for r in results]
    shared = {k: v for k, v in attributes[0].items() if all(a.get(k) == v for a in attributes)}
    table = Table(title="gnnmd bench")
    table.add_column("case", overflow="fold")
    for name in ("ms/step", "ns/day", "vs R=1", "peak MB"):
        table.add_column(name, justify="right", no_wrap=True)
    for r, own in zip(results, attributes, strict=True):
        varying = " ".join(v for k, v in own.items() if k not in shared)
        case = f"{r.system} ({r.beads}) x{r.replicas}" + (f"\n{varying}" if varying else "")
        speedup = f"{r.speedup_vs_single_replica:.1f}x" if r.speedup_vs_single_replica else "-"
        table.add_row(case, f"{r.ms_per_step:.1f}", f"{r.ns_per_day:.2f}", speedup, f"{r.peak_memory_mb:.0f}")
    console = Console()
    console.print(table)
    if shared:
        console.print("all cases: " + ", ".join(shared.values()))
    for line in skipped:
        console.print(f"skipped: {line}")
    _print_footer(console, results[0])
    first = results[0]
    console.print("vs R=1: ns/day over R sequential single-replica runs; peak MB: per case, "
                  f"{first.peak_memory_kind}; threads: {first.threads} ({first.thread_policy})")  # fmt: skip


def print_result(result, title: str = "gnnmd bench (replica runner)", extra_rows=()) -> None:
    """One metric per row: fits an 80-column terminal and never truncates a number."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("system", f"{result.system} ({result.beads} beads)"),
        ("replicas", str(result.replicas)),
        ("time step", f"{result.dt_fs:g} fs"),
        ("backend / device", f"{result.backend} ({result.implementation}) / {result.device} {result.dtype}"),
        ("threads", f"{result.threads} ({result.thread_policy})"),
        ("ns/day (aggregate)", f"{result.ns_per_day:.2f}"),
        ("ns/day per replica", f"{result.ns_per_day_per_replica:.3f}"),
        ("steps/s", f"{result.steps_per_second:.2f}"),
        ("ms/step", f"{result.ms_per_step:.1f}"),
        (f"peak memory ({result.peak_memory_kind})", f"{result.peak_memory_mb:.0f} MB"),
    ]
    if result.skin_nm is not None:
        rows.append(("Verlet skin / list builds", f"{result.skin_nm:g} nm / {result.neighbor_list_builds}"))
        rows.append(("CUDA graph", "on" if result.cuda_graph else "off"))
    for name, value in [*rows, *extra_rows]:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    _print_footer(console, result)


def _print_footer(console: Console, result) -> None:
    trained = (
        "trained"
        if result.model_trained
        else "UNTRAINED (priors from native structures, seeded random network)"
    )
    console.print(f"model {result.model!r}: {trained}")
    console.print(f"{result.steps} timed steps after {result.warmup_steps} warm-up steps")
