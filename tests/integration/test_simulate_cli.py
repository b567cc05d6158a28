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
from gnnmd.models import save_checkpoint, untrained_model
from gnnmd.sim.reporters import COMMITTEE_COLUMNS
from gnnmd.systems import load_system
from tests.conftest import SMALL_CONFIG

SHORT = ["--steps", "6", "--report-interval-ps", "0.008", "--checkpoint-interval-ps", "0.016",
         "--health-interval", "2", "--no-progress"]  # fmt: skip


def simulate(*args: str) -> int:
    return main(["simulate", *args])


def frames(directory, replica: int, system: str = "chignolin") -> np.ndarray:
    topology = load_system(system).topology.to_mdtraj()
    return mdtraj.load_dcd(str(directory / f"replica_{replica:04d}.dcd"), top=topology).xyz


def small_member(chignolin, path):
    """A committee member file: an untrained small model with the shipped models' bead vocabulary."""
    model = untrained_model(SMALL_CONFIG, [(chignolin.topology, chignolin.positions_nm)], seed=1)
    save_checkpoint(model, path, {"trained": False})
    return path


def test_simulate_writes_every_replica_and_a_summary(tmp_path, capsys, one_thread, monkeypatch):
    from gnnmd import kernels

    monkeypatch.setattr(kernels, "_CHOICES_SAID", set())  # the choice is said once per process
    out = tmp_path / "run"
    assert simulate("chignolin,villin", "--replicas", "2", *SHORT, "-o", str(out)) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "UNTRAINED" in printed and "ns/day" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["replica_systems"] == ["chignolin", "chignolin", "villin", "villin"]
    # The default backend is the fastest accurate one built here, said and recorded as what ran.
    assert (run["backend"], run["implementation"]) == ("tabulated", "native-cpu")
    assert "--backend auto runs tabulated" in captured.err
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


def test_committee_columns_warnings_summary_and_resume_refusals(tmp_path, capsys, chignolin, one_thread):
    member = small_member(chignolin, tmp_path / "member.pt")
    out, committee = tmp_path / "run", f"default,{member}"
    common = ["chignolin", "--replicas", "2", "--report-interval-ps", "0.008", "--health-interval", "2",
              "--no-progress", "-o", str(out)]  # fmt: skip
    assert simulate(*common, "--steps", "4", "--committee", committee, "--committee-interval", "1",
                    "--committee-threshold", "1e-6") == 0  # fmt: skip
    assert "replica 1 (chignolin): committee force disagreement" in capsys.readouterr().err
    with (out / "replica_0001.csv").open() as file:
        logged = list(csv.DictReader(file))
    assert [row["step"] for row in logged] == ["0", "2", "4"]
    assert all(float(row[column]) > 0 for row in logged for column in COMMITTEE_COLUMNS)
    report = json.loads((out / "summary.json").read_text())["committee"]
    assert report["members"] == ["default", str(member)] and report["above_threshold"] == [0, 1]
    largest = max(float(r[COMMITTEE_COLUMNS[0]]) for r in logged)
    assert report["max_rms_kj_mol_nm"]["1"] == pytest.approx(largest, abs=1e-6)
    assert simulate(*common, "--steps", "6", "--committee", f"{member},default", "--resume") == 2
    refusal = f"field 'committee' is ['default', '{member}'] but this command asks for"
    assert refusal in capsys.readouterr().err
    assert simulate(*common, "--steps", "6", "--resume") == 2
    assert "field 'committee'" in capsys.readouterr().err
    assert simulate(*common, "--steps", "6", "--committee", committee, "--resume") == 0
    with (out / "replica_0001.csv").open() as file:
        assert [row["step"] for row in csv.DictReader(file)] == ["0", "2", "4", "6"]


def test_committee_errors_exit_2(tmp_path, capsys):
    args = ["chignolin", "--steps", "2", "--report-interval-ps", "0.008"]
    assert simulate(*args, "--committee", "default,ala2", "-o", str(tmp_path / "a")) == 2
    assert "committee members default and ala2 have different bead-type vocabularies" in (
        capsys.readouterr().err
    )
    assert simulate(*args, "--committee", "default", "-o", str(tmp_path / "b")) == 2
    assert "at least 2 models" in capsys.readouterr().err
    assert simulate(*args, "--committee", "default,default", "--committee-interval", "3",
                    "-o", str(tmp_path / "c")) == 2  # fmt: skip
    assert "--committee-interval must be 1 to 2 steps" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")  # refused before anything is written


def test_user_errors_exit_2(tmp_path, capsys):
    assert simulate("chignolin", "--steps", "2", "--cuda-graph", "-o", str(tmp_path / "a")) == 2
    assert "--cuda-graph needs --device cuda" in capsys.readouterr().err
    assert simulate("chignolin", "--steps", "2", "--temperature-k", "300,310", "-o", str(tmp_path / "b")) == 2
    assert "--temperature-k has 2 values" in capsys.readouterr().err
    assert simulate("nowhere", "--steps", "2", "-o", str(tmp_path / "c")) == 2
    assert "nowhere" in capsys.readouterr().err


def test_two_process_torchrun_matches_one_process(tmp_path, chignolin, one_thread):
    """gloo, 2 ranks x 2 replicas against 1 process x 4 replicas, float64, with a committee.

    Rank r runs replicas r and r + 2, and evaluates their committee. Positions
    agree to 1e-9 nm (float64 checkpoints; BLAS may round a smaller batch
    differently in the last bit), the DCD frames (float32 Å) to 1e-6 nm.
    """
    committee = f"default,{small_member(chignolin, tmp_path / 'member.pt')}"
    args = ["chignolin", "--replicas", "4", "--steps", "6", "--dtype", "float64", "--report-interval-ps",
            "0.008", "--health-interval", "2", "--no-progress", "--committee", committee]  # fmt: skip
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert simulate(*args, "-o", str(single)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "gnnmd.cli", "simulate", *args, "-o", str(sharded)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sharded / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(summary["ns_per_day_per_rank"]) == 2
    expected = json.loads((single / "summary.json").read_text())["committee"]["max_rms_kj_mol_nm"]
    assert list(summary["committee"]["max_rms_kj_mol_nm"]) == ["0", "1", "2", "3"]
    assert summary["committee"]["max_rms_kj_mol_nm"] == pytest.approx(expected, rel=1e-9)
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
