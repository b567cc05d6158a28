"""What a training run reports per epoch: ``metrics.csv`` and ``learning_curve.png``.

RMSEs in kJ/mol/nm (forces), kJ/mol (energies), kJ/mol/rad (torsional forces). The plot uses
matplotlib's object API: no global backend change.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"
METRIC_COLUMNS = (
    "epoch", "train_force_rmse", "val_force_rmse", "learning_rate", "seconds",
    "train_energy_rmse", "val_energy_rmse", "val_loss", "val_free_energy_js", "train_torsion_rmse",
    "val_torsion_rmse",
)  # fmt: skip


def write_metrics(output_dir: Path, history: list[dict]) -> None:
    """Rewrite ``metrics.csv`` (one row per epoch, :data:`METRIC_COLUMNS`) and the learning curve."""
    with open(output_dir / METRICS_FILE, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
    plot_learning_curve(history, output_dir / CURVE_FILE)


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
