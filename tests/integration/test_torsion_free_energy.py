"""scripts/torsion_free_energy.py: the all-atom reference and a CG model biased along φ with the
same settings, and the report of both (tiny runs; the measurements are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.systems import load_system
from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "torsion_free_energy.py"
BIAS = ["--pace", "20", "--height", "3.0"]


def circular_distance(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs(np.remainder(a - b + math.pi, 2 * math.pi) - math.pi)


def test_reference_and_model_runs_and_their_report(tmp_path):
    script = load_script(SCRIPT)
    # One all-atom run: 200 steps, ten deposits by OpenMM's Metadynamics on the CG map's φ atoms.
    script.main(["reference-run", "--ns", "0.0004", "--seed", "3", "-o", str(tmp_path / "run.npz"), *BIAS])
    with np.load(tmp_path / "run.npz") as run:
        samples, free_energy = run["samples"], run["free_energy"]
    assert samples.shape == (10, 2) and free_energy.shape == (360,)
    # The bias was built where φ was: F's minimum on the grid −π + k° sits among the sampled φ
    # (so the grid's orientation and φ's sign agree with the CG analysis).
    grid = -math.pi + np.radians(np.arange(360))
    assert circular_distance(samples[:, 0], grid[np.argmin(free_energy)]).min() < math.radians(20)

    outputs = ["-o", str(tmp_path / "reference.npz"), "--dataset", str(tmp_path / "biased.h5")]
    script.main(["reference", "--runs", "2", "--ns", "0.0004", "--processes", "2", *outputs, *BIAS])
    biased = ForceDataset(tmp_path / "biased.h5")
    assert biased.trajectory_ids[0].tolist() == [0] * 10 + [1] * 10
    x, f = biased.frames(0)
    assert x.shape == f.shape == (20, 5, 3) and np.abs(f).max() > 100.0
    np.testing.assert_allclose(f.sum(axis=1), 0.0, atol=1e-2 * np.abs(f).max())  # every atom mapped
    system = load_system("ala2")
    starts = np.stack([system.positions_nm] * 3)
    write_molecule(tmp_path / "starts.h5", system.topology, starts, starts, trajectories=[0, 0, 3])
    script.main(["training-data", "--reference", str(tmp_path / "starts.h5"), "--biased",
                 str(tmp_path / "biased.h5"), "-o", str(tmp_path / "training.h5")])  # fmt: skip
    training = ForceDataset(tmp_path / "training.h5")
    assert training.trajectory_ids[0].tolist() == [0, 0, 3] + [4] * 10 + [5] * 10
    assert training.biased_trajectories[0].tolist() == [4, 5] and len(training) == 23
    for extra in ([], ["--priors-only"]):
        script.main(["model", "ala2", "--starts", str(tmp_path / "starts.h5"), "--replicas", "4",
                     "--groups", "2", "--deposits", "6", "-o", str(tmp_path / f"model{len(extra)}.npz"),
                     *extra, *BIAS])  # fmt: skip
    with np.load(tmp_path / "model1.npz") as saved:
        assert saved["samples"].shape == (24, 2) and saved["free_energies"].shape == (2, 360)
        assert str(saved["label"]) == "model ala2 priors only (tabulated)"
        assert np.bincount(saved["groups"]).tolist() == [12, 12]
    files = [str(tmp_path / name) for name in ("reference.npz", "model0.npz", "model1.npz")]
    script.main(
        ["report", *files, "--json", str(tmp_path / "report.json"), "--plot", str(tmp_path / "F.png")]
    )
    report = json.loads((tmp_path / "report.json").read_text())
    for row in report.values():
        total = sum(v["population"] for v in row["all"]["populations"].values())
        assert total == np.float64(1.0) or abs(total - 1.0) < 1e-9
        assert row["all"]["definitions"]["alpha_L"] == "phi >= 0"
    assert (tmp_path / "F.png").stat().st_size > 10_000
