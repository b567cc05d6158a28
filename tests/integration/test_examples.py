"""Example scripts run and write what they promise."""

from __future__ import annotations

from pathlib import Path

import mdtraj

from gnnmd.systems import load_system
from tests.conftest import load_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    return load_script(EXAMPLES / f"{name}.py")


def test_replicas_example_writes_readable_trajectories(tmp_path):
    assert load("replicas").main(["--steps", "20", "--every", "10", "--out", str(tmp_path)]) == 0
    topology = load_system("villin").topology.to_mdtraj()
    trajectory = mdtraj.load_dcd(str(tmp_path / "replica2_villin.dcd"), top=topology)
    assert trajectory.n_frames == 2 and trajectory.n_atoms == 173
