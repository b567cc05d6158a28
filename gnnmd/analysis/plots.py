"""Validation figures: free-energy surfaces side by side, and 1-D distribution overlays.

matplotlib's object API (Figure + the Agg canvas): drawing never changes the caller's backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gnnmd.analysis.distributions import free_energy, histogram
from gnnmd.analysis.observables import Observable


def _axis_labels(observable: Observable) -> tuple[str, ...]:
    """One axis label per dimension: the observable's own, else its name and unit."""
    if observable.labels:
        return observable.labels
    dimensions = observable.samples.shape[1]
    return tuple(f"{observable.name}[{d}] ({observable.unit})" for d in range(dimensions))


def _symbol(label: str) -> str:
    """The label without its unit: "φ (rad)" -> "φ"."""
    return label.split(" (")[0]


def plot_validation(pairs: list, settings, path: Path) -> Path:
    """One PNG: each 2-D free-energy surface (kJ/mol; reference | model), then every 1-D overlay.

    ``pairs`` holds (simulated, reference, value_range) per observable; axes are
    labelled from the observables' ``labels`` (e.g. φ/ψ, or RMSD (nm)/Q).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    joint = [p for p in pairs if p[1].samples.shape[1] == 2]
    single = [p for p in pairs if p[1].samples.shape[1] == 1]
    columns = 3
    rows = len(joint) + math.ceil(len(single) / columns)
    figure = Figure(figsize=(4 * columns, 3.3 * rows))
    FigureCanvasAgg(figure)
    for index, (sim, ref, value_range) in enumerate(joint):
        for column, (label, observable) in enumerate((("reference", ref), ("model", sim))):
            axis = figure.add_subplot(rows, columns, index * columns + column + 1)
            energy = free_energy(
                histogram(observable.samples, settings.bins_2d, value_range), settings.langevin.temperature_k
            )
            extent = [*value_range[0], *value_range[1]]
            image = axis.imshow(energy.T, origin="lower", extent=extent, cmap="viridis", vmax=25.0)
            labels = _axis_labels(ref)
            title = f"{label}: F({', '.join(_symbol(a) for a in labels)})"
            axis.set(title=title, xlabel=labels[0], ylabel=labels[1])
            if not ref.periodic:
                axis.set_aspect("auto")  # ranges come from the samples and may differ a lot in size
            figure.colorbar(image, ax=axis, label="kJ/mol")
    offset = len(joint) * columns
    for index, (sim, ref, value_range) in enumerate(single):
        axis = figure.add_subplot(rows, columns, offset + index + 1)
        edges = np.linspace(*value_range[0], settings.bins_1d + 1)
        axis.hist(ref.samples[:, 0], bins=edges, density=True, histtype="step", label="reference")
        axis.hist(sim.samples[:, 0], bins=edges, density=True, histtype="step", label="model")
        axis.set_title(ref.name, fontsize=8)
        axis.set_xlabel(ref.labels[0] if ref.labels else ref.unit)
        if index == 0:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return path
