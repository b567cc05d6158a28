"""What ``gnnmd simulate`` shows a person: a live progress bar and the closing table."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator:
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


def print_summary(report: dict, directory: Path) -> None:
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
