"""Figures of benchmark results (matplotlib, without pyplot's global state)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from gnnmd.engine.bench import BenchResult

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")


def series_label(result: BenchResult) -> str:
    """Everything that identifies a line apart from the replica count."""
    engine = f"{result.engine}/{result.route}" if result.route else result.engine
    parts = [result.system, engine, result.backend, result.device, result.dtype]
    if result.skin_nm is not None:
        parts.append(f"skin {result.skin_nm:g} nm")
    if result.cuda_graph:
        parts.append("CUDA graph")
    return ", ".join(parts)


def plot_ns_per_day(results: Sequence[BenchResult], path: Path) -> Path:
    """Write a PNG of aggregate ns/day against replica count, one line per case; returns ``path``."""
    figure = ns_per_day_figure(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def ns_per_day_figure(results: Sequence[BenchResult]):
    """The matplotlib Figure of :func:`plot_ns_per_day` (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for result in results:
        series[series_label(result)].append((result.replicas, result.ns_per_day))
    figure = Figure(figsize=(9.0, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (label, points) in enumerate(series.items()):
        points.sort()
        # Colour, marker and line style all vary: lines stay apart in greyscale and for colour-blind readers.
        style = {"marker": MARKERS[index % len(MARKERS)], "linestyle": LINE_STYLES[index % len(LINE_STYLES)]}
        axes.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.set_xticks(sorted({r.replicas for r in results}))
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.set_xlabel("replicas")
    axes.set_ylabel("aggregate ns/day")
    untrained = any(not r.model_trained for r in results)
    models = ", ".join(sorted({r.model for r in results}))
    axes.set_title(f"gnnmd bench: {models}" + (" (UNTRAINED)" if untrained else ""))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # beside
    figure.tight_layout()
    return figure
