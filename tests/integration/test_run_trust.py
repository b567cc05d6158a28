"""``gnnmd simulate`` run folders: one owner, no silent mixing of runs, resumable at any moment,
clear errors for bad structures and system failures (each case failed before the run-folder work)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mdtraj
import numpy as np
import pytest
import torch

from gnnmd.cli import main
from gnnmd.errors import CheckpointError, TopologyError
from gnnmd.models import PRETRAINED_DIR, load_model
from gnnmd.runfolder import RunFolderError, RunFolderLock
from gnnmd.sim import ReplicaRunner, reporters
from gnnmd.sim.simulation import OutputOptions, Simulation
from gnnmd.systems import load_system

COMMON = ["chignolin", "--replicas", "2", "--report-interval-ps", "0.008", "--checkpoint-interval-ps",
          "0.016", "--health-interval", "2", "--no-progress"]  # fmt: skip


def simulate(*args: str) -> int:
    return main(["simulate", *args])


def xyz(directory, replica: int) -> np.ndarray:
    topology = load_system("chignolin").topology.to_mdtraj()
    return mdtraj.load_dcd(str(directory / f"replica_{replica:04d}.dcd"), top=topology).xyz


def rows(directory, replica: int) -> list[dict]:
    with (directory / f"replica_{replica:04d}.csv").open() as file:
        return list(csv.DictReader(file))


def same_outputs(a, b, replicas=(0, 1)) -> None:
    for replica in replicas:
        assert np.array_equal(xyz(a, replica), xyz(b, replica))
        assert rows(a, replica) == rows(b, replica)


def test_a_held_folder_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    with RunFolderLock(out):
        assert simulate(*COMMON, "--steps", "2", "-o", str(out)) == 2
        assert f"run: in use by pid {os.getpid()}" in capsys.readouterr().err
        assert simulate(*COMMON, "--steps", "2", "--resume", "-o", str(out)) == 2
        assert f"in use by pid {os.getpid()}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".gnnmd.lock"]  # the refused runs wrote nothing


def test_two_runs_started_together_one_refused_outputs_whole(tmp_path, one_thread):
    """Two processes race for one folder: one runs, the other exits 2 naming the holder."""
    out, alone = tmp_path / "run", tmp_path / "alone"
    args = [*COMMON, "--steps", "40", "--seed", "5"]
    command = [sys.executable, "-m", "gnnmd.cli", "simulate", *args, "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    racers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read()) for p in racers]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by pid" in refused or "already holds a run" in refused
    assert simulate(*args, "-o", str(alone)) == 0
    same_outputs(out, alone)


def test_resume_refuses_a_replaced_model_file(tmp_path, capsys):
    model, out = tmp_path / "model.pt", tmp_path / "run"
    shutil.copy(PRETRAINED_DIR / "default.pt", model)
    assert simulate(*COMMON, "--steps", "2", "--model", str(model), "-o", str(out)) == 0
    shutil.copy(PRETRAINED_DIR / "cgschnet-benchmark.pt", model)  # same path, other content
    assert simulate(*COMMON, "--steps", "4", "--model", str(model), "--resume", "-o", str(out)) == 2
    assert "field 'model_sha256' is '" in capsys.readouterr().err


def test_resume_refuses_a_new_report_interval_and_a_foreign_checkpoint(tmp_path, capsys):
    four, eight = tmp_path / "four", tmp_path / "eight"
    assert simulate(*COMMON, "--steps", "2", "-o", str(four)) == 0
    changed = [a if a != "0.008" else "0.016" for a in COMMON]
    assert simulate(*changed, "--steps", "4", "--resume", "-o", str(four)) == 2
    assert "field 'report_interval_ps' is 0.008 but this command asks for 0.016" in capsys.readouterr().err
    wider = [a if a != "2" else "4" for a in COMMON]  # 4 replicas
    assert simulate(*wider, "--steps", "2", "-o", str(eight)) == 0
    shutil.copy(four / "checkpoint.pt", eight / "checkpoint.pt")
    assert simulate(*wider, "--steps", "4", "--resume", "-o", str(eight)) == 2
    assert "the checkpoint belongs to another run" in capsys.readouterr().err


def test_backend_change_needs_consent_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    assert simulate(*COMMON, "--steps", "2", "--backend", "reference", "-o", str(out)) == 0
    assert simulate(*COMMON, "--steps", "4", "--backend", "tabulated", "--resume", "-o", str(out)) == 2
    assert "field 'backend' is 'reference' but this command asks for 'tabulated'; pass --accept-change " \
           "backend" in capsys.readouterr().err  # fmt: skip
    assert simulate(*COMMON, "--steps", "4", "--backend", "tabulated", "--resume", "--accept-change",
                    "backend", "-o", str(out)) == 0  # fmt: skip
    record = json.loads((out / "run.json").read_text())
    assert record["backend"] == "reference"  # the original, and the change with its step:
    assert record["changes"] == [
        {
            "field": "backend",
            "old": "reference",
            "new": "tabulated",
            "step": 2,
            "time_ps": pytest.approx(0.008),
        }
    ]
    # The default (auto) resolves to tabulated here: the same backend, no consent needed.
    assert simulate(*COMMON, "--steps", "6", "--resume", "-o", str(out)) == 0
    back = ("--backend", "reference")  # back needs consent too
    assert simulate(*COMMON, "--steps", "8", *back, "--resume", "-o", str(out)) == 2


def test_smaller_time_step_after_a_blow_up(tmp_path, capsys, one_thread):
    """A run at 40 fs blows up; it continues from its last checkpoint at 4 fs, frames stay 0.16 ps apart."""
    out = tmp_path / "run"
    hot = ["chignolin", "--replicas", "2", "--report-interval-ps", "0.16", "--checkpoint-interval-ps",
           "0.16", "--health-interval", "1", "--no-progress", "--ns", "0.00096", "-o", str(out)]  # fmt: skip
    assert simulate(*hot, "--dt-fs", "40", "--temperature-k", "3000") == 2
    error = capsys.readouterr().err
    assert "--resume --dt-fs 20 --accept-change dt-fs" in error, error
    record = json.loads((out / "run.json").read_text())
    assert simulate(*hot, "--dt-fs", "4", "--temperature-k", "3000", "--resume") == 2
    assert "pass --accept-change dt-fs" in capsys.readouterr().err
    code = simulate(*hot, "--dt-fs", "4", "--temperature-k", "3000", "--resume", "--accept-change", "dt-fs")
    assert code == 0, capsys.readouterr().err
    changed = json.loads((out / "run.json").read_text())["changes"]
    assert changed[0]["field"] == "timestep_fs" and (changed[0]["old"], changed[0]["new"]) == (40.0, 4.0)
    times = [float(row["time_ps"]) for row in rows(out, 0)]
    assert times == pytest.approx([0.16 * i for i in range(7)])  # 0.96 ps in all, one spacing
    assert len(xyz(out, 0)) == 7 and record["timestep_fs"] == 40.0


def test_killed_before_the_first_checkpoint_resumes_from_step_0(tmp_path, one_thread):
    out, straight = tmp_path / "run", tmp_path / "straight"
    assert simulate(*COMMON, "--steps", "4", "-o", str(straight)) == 0
    assert simulate(*COMMON, "--steps", "4", "-o", str(out)) == 0
    for name in ("checkpoint.pt", "summary.json", "replica_0000.dcd"):  # as if killed during set-up
        (out / name).unlink()
    (out / ".checkpoint.pt.k2j3.tmp").write_bytes(b"half a checkpoint")
    assert simulate(*COMMON, "--steps", "4", "--resume", "-o", str(out)) == 0
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    same_outputs(out, straight)


def test_kill_9_mid_run_then_resume_equals_a_straight_run(tmp_path, one_thread):
    out, straight = tmp_path / "run", tmp_path / "straight"
    args = [*COMMON, "--steps", "400"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "gnnmd.cli", "simulate", *args, "-o", str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert simulate(*args, "--resume", "-o", str(out)) == 0
    assert simulate(*args, "-o", str(straight)) == 0
    same_outputs(out, straight)


def test_python_simulation_refuses_to_overwrite_and_the_cli_refuses_its_checkpoint(
    tmp_path, small_model, chignolin, capsys
):
    out = tmp_path / "run"
    assert simulate(*COMMON, "--steps", "2", "-o", str(out)) == 0
    model = load_model("default")
    runner = ReplicaRunner.replicas_of(model, load_system("chignolin"), 2, seed=1)
    options = OutputOptions(out, report_interval=2, checkpoint_interval=4)
    with pytest.raises(RunFolderError, match="already holds a run .*overwrite=True"):
        Simulation(runner, options)
    Simulation(runner, options, overwrite=True).close()  # explicit: the user's choice
    assert simulate(*COMMON, "--steps", "4", "--resume", "-o", str(out)) == 2
    assert "field 'extra.run_id' is None" in capsys.readouterr().err


def test_a_folder_of_other_files_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert simulate(*COMMON, "--steps", "2", "-o", str(out)) == 2
    assert "is not empty (notes.txt) and holds no run.json" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"


def test_run_json_records_what_defines_the_run(tmp_path):
    out = tmp_path / "run"
    assert simulate(*COMMON, "--steps", "2", "-o", str(out)) == 0
    record = json.loads((out / "run.json").read_text())
    assert len(record["model_sha256"]) == 64 and len(record["system_sha256"][0]) == 64
    assert record["report_interval_ps"] == pytest.approx(0.008)
    assert record["checkpoint_interval_ps"] == 0.016 and record["backend"] == "tabulated"
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["extra"]["run_id"] == record["run_id"]
    trajectory = mdtraj.load(str(out / "replica_0001.dcd"), top=str(out / "chignolin.pdb"))  # no gnnmd
    assert trajectory.n_atoms == 49 and trajectory.n_frames == 2
    from gnnmd.sim.reporters import dcd_frame_interval_ps

    assert dcd_frame_interval_ps(out / "replica_0001.dcd") == pytest.approx(0.008, rel=1e-6)  # in its header


def test_system_errors_are_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert simulate(*COMMON, "--steps", "2", "-o", str(tmp_path / "file" / "run")) == 2
    assert "file/run: Not a directory (ENOTDIR)" in capsys.readouterr().err
    assert simulate(*COMMON, "--steps", "2", "-o", str(tmp_path / "file")) == 2
    assert "file: exists and is not a directory" in capsys.readouterr().err

    class FullDisk:
        """mdtraj's DCD writer on a full disk: ``TypeError: 'dict' object is not callable``."""

        def __init__(self, *args, **kwargs) -> None:
            pass

        def write(self, *args, **kwargs) -> None:
            raise TypeError("'dict' object is not callable")

        def close(self) -> None:
            pass

    monkeypatch.setattr(reporters, "DCDTrajectoryFile", FullDisk)
    assert simulate(*COMMON, "--steps", "2", "-o", str(tmp_path / "run")) == 2
    error = capsys.readouterr().err
    assert "replica_0000.dcd: Input/output error while writing frame 0 (TypeError" in error
    assert len(error.strip().splitlines()) == 1


def test_a_full_disk_loses_nothing(tmp_path, capsys, one_thread):
    """On a real 64 kB tmpfs: the run stops with ENOSPC; on a larger disk it resumes to the straight run."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CI and the developers' machines run as root)")
    try:
        out, straight = disk / "run", tmp_path / "straight"
        args = [*COMMON, "--steps", "120", "--report-interval-ps", "0.004"]
        assert simulate(*args, "-o", str(out)) == 2
        assert "No space left on device" in capsys.readouterr().err
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        assert simulate(*args, "--resume", "-o", str(out)) == 0
        assert simulate(*args, "-o", str(straight)) == 0
        same_outputs(out, straight)
    finally:
        subprocess.run(["umount", str(disk)])


def test_bad_structures_are_named(tmp_path):
    source = load_system("chignolin").pdb_path
    lines = source.read_text().splitlines()
    second = [i for i, line in enumerate(lines) if line.startswith("ATOM")][1]
    nan = list(lines)
    nan[second] = nan[second][:30] + "     nan" + nan[second][38:]
    (tmp_path / "nan.pdb").write_text("\n".join(nan) + "\n")
    with pytest.raises(TopologyError, match=r"nan.pdb: model 1, atom 2 \(CA of TYR1\) has a non-finite"):
        load_system(tmp_path / "nan.pdb")
    zero = [line[:30] + "   0.000   0.000   0.000" + line[54:] if line.startswith("ATOM") else line
            for line in lines]  # fmt: skip
    (tmp_path / "zero.pdb").write_text("\n".join(zero) + "\n")
    with pytest.raises(TopologyError, match=r"zero.pdb: bonded beads 0 \(N of TYR1\) and 1 .* degenerate"):
        load_system(tmp_path / "zero.pdb")


def test_mmcif_structures_load_like_their_pdb(tmp_path):
    import openmm.app

    pdb = openmm.app.PDBFile(str(load_system("chignolin").pdb_path))
    with open(tmp_path / "chignolin.cif", "w") as handle:
        openmm.app.PDBxFile.writeFile(pdb.topology, pdb.positions, handle)
    from_cif, from_pdb = load_system(tmp_path / "chignolin.cif"), load_system("chignolin")
    assert from_cif.topology.bead_types == from_pdb.topology.bead_types
    np.testing.assert_allclose(from_cif.positions_nm, from_pdb.positions_nm, atol=1e-6)


def test_non_finite_weights_are_named_at_load(tmp_path):
    checkpoint = torch.load(PRETRAINED_DIR / "default.pt", weights_only=True)
    name = next(iter(checkpoint["network"]))
    checkpoint["network"][name] = torch.full_like(checkpoint["network"][name], float("nan"))
    torch.save(checkpoint, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=rf"nan.pt: tensor 'network.{name}' holds non-finite values"):
        load_model(tmp_path / "nan.pt")


def test_permission_denied_is_one_line(tmp_path, capsys, monkeypatch):
    """EACCES (root, as in CI, bypasses file modes, so the refusal is injected where it would occur)."""

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(RunFolderLock, "acquire", denied)
    assert simulate(*COMMON, "--steps", "2", "-o", str(tmp_path / "run")) == 2
    error = capsys.readouterr().err
    assert error.strip() == (
        f"gnnmd simulate: error: {tmp_path / 'run' / '.gnnmd.lock'}: Permission denied (EACCES); "
        "files already written (outputs, the last checkpoint) are kept"
    )
