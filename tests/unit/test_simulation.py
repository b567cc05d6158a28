"""Production runs: per-replica outputs, health policy (stop or drop), checkpoints that stay valid."""

from __future__ import annotations

import csv

import mdtraj
import numpy as np
import pytest
import torch

from gnnmd.errors import SimulationError
from gnnmd.sim import ReplicaRunner
from gnnmd.sim.checkpoint import load_checkpoint
from gnnmd.sim.reporters import CSV_COLUMNS
from gnnmd.sim.simulation import OutputOptions, Simulation


def make_runner(model, system, replicas=3, **kwargs):
    return ReplicaRunner.replicas_of(model, system, replicas, dtype=torch.float64, seed=8, **kwargs)


def options(tmp_path, **kwargs):
    values = dict(report_interval=2, checkpoint_interval=4, health_interval=2)
    return OutputOptions(tmp_path, **{**values, **kwargs})


def poison(runner, replica):
    start, _ = runner.bead_ranges()[replica]
    runner.positions[start + 3, 0] = float("nan")


def test_outputs_are_per_replica_and_readable(small_model, chignolin, tmp_path, one_thread):
    runner = make_runner(small_model, chignolin, 2)
    simulation = Simulation(runner, options(tmp_path, trajectory_format="xtc"))
    summary = simulation.run(6)
    simulation.close()
    assert summary.steps == 6 and summary.simulated_ns == pytest.approx(2 * 6 * 4e-6)
    topology = chignolin.topology.to_mdtraj()
    trajectory = mdtraj.load_xtc(str(tmp_path / "replica_0001.xtc"), top=topology)
    assert trajectory.n_frames == 4  # steps 0, 2, 4, 6
    np.testing.assert_allclose(trajectory.xyz[-1], runner.positions[49:].numpy(), atol=1e-3)  # XTC precision
    np.testing.assert_allclose(trajectory.time, [0.0, 0.008, 0.016, 0.024], atol=1e-6)
    with (tmp_path / "replica_0001.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(CSV_COLUMNS) and [int(r["step"]) for r in rows] == [0, 2, 4, 6]
    assert float(rows[-1]["temperature_k"]) == pytest.approx(float(runner.temperatures_k()[1]), rel=1e-6)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["frames_written"] == [4, 4]


def test_poisoned_replica_stops_the_run_with_its_last_good_frame(
    small_model, chignolin, tmp_path, one_thread
):
    runner = make_runner(small_model, chignolin)
    simulation = Simulation(runner, options(tmp_path))
    simulation.run(4)  # checkpoint at step 4
    good = runner.positions[49:98].clone()
    before = (tmp_path / "checkpoint.pt").read_bytes()
    poison(runner, 1)
    with pytest.raises(SimulationError, match=r"replica 1 \(chignolin\): non-finite .* at step 6.*step 4"):
        simulation.run(10)
    saved = mdtraj.load_pdb(str(tmp_path / "replica_0001_last_good.pdb"))
    np.testing.assert_allclose(saved.xyz[0], good.numpy(), atol=1e-3)  # PDB precision
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # the last checkpoint is untouched
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_dropped_replica_leaves_the_others_unchanged(small_model, chignolin, tmp_path, one_thread):
    reference = make_runner(small_model, chignolin)
    reference.step(10)
    runner = make_runner(small_model, chignolin)
    simulation = Simulation(runner, options(tmp_path / "run", on_failure="drop"))
    simulation.run(4)
    poison(runner, 1)
    summary = simulation.run(10)
    simulation.close()
    assert runner.replica_ids == [0, 2] and list(summary.dropped) == [1]
    assert "replica 1" in simulation.warnings[0]
    assert (tmp_path / "run" / "replica_0001_last_good.pdb").is_file()
    ranges = reference.bead_ranges()
    expected = torch.cat([reference.positions[slice(*ranges[0])], reference.positions[slice(*ranges[2])]])
    torch.testing.assert_close(runner.positions, expected, rtol=0, atol=1e-10)  # BLAS may round 2 vs 3
    document = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert document["replica_ids"] == [0, 2] and 1 in document["extra"]["dropped"]


def test_resume_after_a_crash_reproduces_the_uninterrupted_outputs(
    small_model, chignolin, tmp_path, one_thread
):
    straight = Simulation(make_runner(small_model, chignolin, 2), options(tmp_path / "a"))
    straight.run(12)
    straight.close()
    crashed = Simulation(make_runner(small_model, chignolin, 2), options(tmp_path / "b"))
    crashed.run(8)  # checkpoint at step 8
    crashed.runner.step(2)  # then frames of step 10 are written, and the process dies before a checkpoint
    crashed.report()
    crashed.close()
    resumed_runner = make_runner(small_model, chignolin, 2)
    resumed = Simulation.resume(resumed_runner, options(tmp_path / "b"))
    assert resumed_runner.steps_done == 8
    resumed.run(12)
    resumed.close()
    assert torch.equal(resumed_runner.positions, straight.runner.positions)
    topology = chignolin.topology.to_mdtraj()
    for replica in ("replica_0000", "replica_0001"):
        a = mdtraj.load_dcd(str(tmp_path / "a" / f"{replica}.dcd"), top=topology).xyz
        b = mdtraj.load_dcd(str(tmp_path / "b" / f"{replica}.dcd"), top=topology).xyz
        assert a.shape[0] == 7 and np.array_equal(a, b)
        log_a = (tmp_path / "a" / f"{replica}.csv").read_text()
        assert log_a == (tmp_path / "b" / f"{replica}.csv").read_text()


def test_a_checkpoint_with_other_noise_is_refused_on_resume(small_model, chignolin, tmp_path, one_thread):
    """Version-1 checkpoints come from the hash-based noise: continuing them would not be the same run."""
    from gnnmd.errors import CheckpointError
    from gnnmd.sim.checkpoint import FORMAT_VERSION, LEGACY_NOISE

    run = Simulation(make_runner(small_model, chignolin, 2), options(tmp_path))
    run.run(4)
    run.close()
    path = options(tmp_path).checkpoint_path
    document = load_checkpoint(path)
    assert document["format_version"] == FORMAT_VERSION == 2 and document["noise"] == "philox4x32-10"
    del document["noise"]
    torch.save({**document, "format_version": 1}, path)
    assert load_checkpoint(path)["noise"] == LEGACY_NOISE  # still readable, for what it holds
    with pytest.raises(CheckpointError, match=r"field 'noise' is 'lowbias32-chain'.*not be the same run"):
        Simulation.resume(make_runner(small_model, chignolin, 2), options(tmp_path))
