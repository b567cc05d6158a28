"""Example scripts run and write what they promise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mdtraj

from gnnmd.systems import load_system

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replicas_example_writes_readable_trajectories(tmp_path):
    assert load("replicas").main(["--steps", "20", "--every", "10", "--out", str(tmp_path)]) == 0
    topology = load_system("villin").topology.to_mdtraj()
    trajectory = mdtraj.load_dcd(str(tmp_path / "replica2_villin.dcd"), top=topology)
    assert trajectory.n_frames == 2 and trajectory.n_atoms == 173
