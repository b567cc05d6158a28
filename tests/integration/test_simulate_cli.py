"""``gnnmd simulate``: outputs, resume, refusals, and a 2-process torchrun run equal to one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import mdtraj
import numpy as np
import pytest
import torch

from gnnmd.cli import main
from gnnmd.systems import load_system

SHORT = ["--steps", "6", "--report-interval-ps", "0.008", "--checkpoint-interval-ps", "0.016",
         "--health-interval", "2", "--no-progress"]  # fmt: skip


def simulate(*args: str) -> int:
    return main(["simulate", *args])


def frames(directory, replica: int, system: str = "chignolin") -> np.ndarray:
    topology = load_system(system).topology.to_mdtraj()
    return mdtraj.load_dcd(str(directory / f"replica_{replica:04d}.dcd"), top=topology).xyz


def test_simulate_writes_every_replica_and_a_summary(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    assert simulate("chignolin,villin", "--replicas", "2", *SHORT, "-o", str(out)) == 0
    printed = capsys.readouterr().out
    assert "UNTRAINED" in printed and "ns/day" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["replica_systems"] == ["chignolin", "chignolin", "villin", "villin"]
    assert frames(out, 3, "villin").shape == (4, 173, 3)  # steps 0, 2, 4, 6
    with (out / "replica_0000.csv").open() as file:
        assert [row["step"] for row in csv.DictReader(file)] == ["0", "2", "4", "6"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == 4 and summary["simulated_ns"] == pytest.approx(4 * 6 * 4e-6)
    assert summary["ns_per_day"] == pytest.approx(summary["simulated_ns"] * 86400 / summary["wall_seconds"])


def test_resume_extends_a_run_exactly_and_refuses_changed_options(tmp_path, capsys, one_thread):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["chignolin", "--replicas", "2", "--report-interval-ps", "0.008", "--health-interval", "2",
              "--no-progress"]  # fmt: skip
    assert simulate(*common, "--steps", "8", "-o", str(straight)) == 0
    assert simulate(*common, "--steps", "4", "-o", str(split)) == 0
    assert simulate(*common, "--steps", "4", "-o", str(split)) == 2  # a run is there: no silent overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert simulate(*common, "--steps", "8", "--seed", "3", "--resume", "-o", str(split)) == 2
    assert "field 'seed' is 0 but this command asks for 3" in capsys.readouterr().err
    assert simulate(*common, "--steps", "8", "--resume", "-o", str(split)) == 0
    for replica in (0, 1):
        assert np.array_equal(frames(split, replica), frames(straight, replica))
        name = f"replica_{replica:04d}.csv"
        assert (split / name).read_text() == (straight / name).read_text()


def test_user_errors_exit_2(tmp_path, capsys):
    assert simulate("chignolin", "--steps", "2", "--cuda-graph", "-o", str(tmp_path / "a")) == 2
    assert "--cuda-graph needs --device cuda" in capsys.readouterr().err
    assert simulate("chignolin", "--steps", "2", "--temperature-k", "300,310", "-o", str(tmp_path / "b")) == 2
    assert "--temperature-k has 2 values" in capsys.readouterr().err
    assert simulate("nowhere", "--steps", "2", "-o", str(tmp_path / "c")) == 2
    assert "nowhere" in capsys.readouterr().err


def test_two_process_torchrun_matches_one_process(tmp_path, one_thread):
    """gloo, 2 ranks x 2 replicas against 1 process x 4 replicas, float64.

    Rank r runs replicas r and r + 2. Positions agree to 1e-9 nm (float64
    checkpoints; BLAS may round a smaller batch differently in the last bit) and
    the DCD frames (float32 Å) to 1e-6 nm.
    """
    args = ["chignolin", "--replicas", "4", "--steps", "6", "--dtype", "float64", "--report-interval-ps",
            "0.008", "--health-interval", "2", "--no-progress"]  # fmt: skip
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert simulate(*args, "-o", str(single)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "gnnmd.cli", "simulate", *args, "-o", str(sharded)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sharded / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(summary["ns_per_day_per_rank"]) == 2
    for replica in range(4):
        np.testing.assert_allclose(frames(sharded, replica), frames(single, replica), rtol=0, atol=1e-6)
    whole = torch.load(single / "checkpoint.pt", weights_only=True)
    for rank in (0, 1):
        part = torch.load(sharded / f"checkpoint_rank{rank}.pt", weights_only=True)
        assert part["replica_ids"] == [rank, rank + 2]
        for index, replica in enumerate(part["replica_ids"]):
            mine = part["positions_nm"][49 * index : 49 * (index + 1)]
            expected = whole["positions_nm"][49 * replica : 49 * (replica + 1)]
            torch.testing.assert_close(mine, expected, rtol=0, atol=1e-9)
