"""The learning curve of a training run (matplotlib's object API: no global backend change)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_learning_curve(history: list[dict], path: Path) -> None:
    """Training and validation force RMSE (kJ/mol/nm), and energy RMSE (kJ/mol) when fitted, per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    with_energies = any(row.get("val_energy_rmse") is not None for row in history)
    figure = Figure(figsize=(10 if with_energies else 5, 3.5))
    FigureCanvasAgg(figure)
    axes = list(np.atleast_1d(figure.subplots(1, 2 if with_energies else 1)))
    panels = [("force", "kJ/mol/nm")] + ([("energy", "kJ/mol")] if with_energies else [])
    for axis, (quantity, unit) in zip(axes, panels, strict=True):
        axis.plot(epochs, [row[f"train_{quantity}_rmse"] for row in history], "o-", label="training")
        axis.plot(epochs, [row[f"val_{quantity}_rmse"] for row in history], "s--", label="validation")
        axis.set(xlabel="epoch", ylabel=f"{quantity} RMSE ({unit})", title=f"{quantity} matching")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
