"""The OpenMM example script and `gnnmd bench --engine openmm` run and write what they promise."""

from __future__ import annotations

import json
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from gnnmd.cli import main
from tests.conftest import load_script
from tests.integration.test_openmm_forces import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(path: Path):
    return load_script(path)


@pytest.mark.parametrize("route", ["torch", "python"])
def test_openmm_python_example(tmp_path, route, capsys):
    example = load_example(EXAMPLES / "openmm_python.py")
    argv = ["--steps", "40", "--every", "20", "--route", route, "--platform", "CPU", "--out", str(tmp_path)]
    assert example.main(argv) == 0
    frames = mdtraj.load(str(tmp_path / "chignolin.dcd"), top=str(tmp_path / "chignolin_cg.pdb"))
    assert frames.n_frames == 2 and frames.n_atoms == 49 and np.isfinite(frames.xyz).all()
    energies = np.loadtxt(tmp_path / "chignolin_energy.csv", delimiter=",", usecols=2)
    assert energies.shape == (2,) and np.isfinite(energies).all()
    assert "RMSD to native" in capsys.readouterr().out


def test_bench_engine_openmm_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    argv = [
        "bench",
        "--engine",
        "openmm",
        "--replicas",
        "2",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--json",
        str(path),
    ]
    assert main(argv) == 0
    output = capsys.readouterr().out
    assert "route overhead, ms/step" in output and "torchforce" in output
    (row,) = json.loads(path.read_text())["benchmarks"]
    assert row["engine"] == "openmm" and row["route"] == "torchforce" and row["device"] == "openmm-Reference"
    assert row["backend"] == "reference"
    assert row["replicas"] == 2 and row["beads"] == 49 and row["ns_per_day"] > 0
    assert row["route_overhead_ms_per_step"] > 0 and row["model_ms_per_evaluation"] > 0


def test_bench_refuses_openmm_flags_for_the_replica_runner(capsys):
    assert main(["bench", "--route", "python", "--steps", "1"]) == 2
    assert "--engine openmm only" in capsys.readouterr().err
