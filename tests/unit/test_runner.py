"""The batched BAOAB replica runner: reproducible, thermostatted, independent replicas, exact restarts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.errors import CheckpointError
from gnnmd.models import load_model
from gnnmd.sim import LangevinSettings, ReplicaRunner
from gnnmd.sim.checkpoint import load_checkpoint, save_checkpoint
from gnnmd.sim.integrators import BAOAB
from gnnmd.sim.noise import CounterNoise
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K


def runner(chignolin, replicas=2, seed=0, **kwargs):
    return ReplicaRunner.replicas_of(load_model("default"), chignolin, replicas, seed=seed, **kwargs)


def test_same_seed_same_trajectory_and_different_seed_differs(chignolin, one_thread):
    a, b, c = runner(chignolin, seed=1), runner(chignolin, seed=1), runner(chignolin, seed=2)
    for r in (a, b, c):
        r.step(5)
    assert torch.equal(a.positions, b.positions)
    assert not torch.allclose(a.positions, c.positions)


def test_short_run_stays_finite_and_warms_up(chignolin, one_thread):
    r = runner(chignolin, replicas=4, settings=LangevinSettings(timestep_fs=4.0, friction_per_ps=5.0))
    r.step(150)
    r.check_finite()
    assert r.energies.shape == (4,) and r.energies.grad_fn is None
    temperatures = r.temperatures_k()
    assert ((temperatures > 150) & (temperatures < 500)).all(), temperatures


def block_mean_and_error(samples: list[float], blocks: int = 20) -> tuple[float, float]:
    """Mean and standard error from ``blocks`` block averages (blocks longer than the correlation time)."""
    means = np.array([chunk.mean() for chunk in np.array_split(np.asarray(samples), blocks)])
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def test_harmonic_system_thermalises_to_kt_per_degree_of_freedom_per_replica(one_thread):
    """Two 'replicas' of 400 harmonic beads at 250 K and 400 K with different frictions.

    <½ m v²> and <½ k x²> per degree of freedom must each equal ½ kT of their
    own replica within 4 standard errors, and the error must be small enough
    (below 1.5%) for the test to be able to fail.
    """
    beads, spring = 400, 500.0  # kJ/mol/nm²
    temperatures, frictions = (250.0, 400.0), (5.0, 20.0)
    replica = torch.arange(2).repeat_interleave(beads)
    masses = torch.full((2 * beads,), 12.0, dtype=torch.float64)
    noise = CounterNoise(9, replica, torch.arange(beads).repeat(2), torch.float64)
    per_bead_t = torch.tensor(temperatures, dtype=torch.float64)[replica]
    per_bead_gamma = torch.tensor(frictions, dtype=torch.float64)[replica]
    integrator = BAOAB(masses, 0.005, per_bead_t, per_bead_gamma, noise)

    def harmonic(x):
        return 0.5 * spring * (x * x).sum().reshape(1), -spring * x

    x = torch.zeros(2 * beads, 3, dtype=torch.float64)
    v, f = integrator.maxwell_boltzmann(), -spring * x
    kinetic, potential = [[], []], [[], []]
    for step in range(3200):
        x, v, f, _ = integrator.step(x, v, f, harmonic, step)
        if step >= 200:
            for r in range(2):
                rows = slice(r * beads, (r + 1) * beads)
                kinetic[r].append(float((0.5 * 12.0 * v[rows] ** 2).mean()))
                potential[r].append(float((0.5 * spring * x[rows] ** 2).mean()))
    for r in range(2):
        half_kt = 0.5 * BOLTZMANN_KJ_PER_MOL_K * temperatures[r]
        for samples in (kinetic[r], potential[r]):
            mean, error = block_mean_and_error(samples)
            assert error < 0.015 * half_kt
            assert abs(mean - half_kt) < 4 * error, (r, mean / half_kt, error / half_kt)


def test_replica_is_the_same_alone_or_in_a_mixed_batch_of_64(small_model, chignolin, villin, one_thread):
    """Same seed and global index: the same trajectory alone or among 63 others (mixed proteins).

    The noise is identical by construction (checked bit for bit in test_noise.py).
    The forces are not always bit-identical: BLAS picks different kernels for
    different batch sizes (about 1 ulp in float64), so positions are compared at
    1e-10 nm in float64, six orders of magnitude below what one different noise
    draw would move them (checked on the last line).
    """
    systems = [chignolin] * 30 + [villin] * 2 + [chignolin] * 30 + [villin] * 2
    kwargs = dict(dtype=torch.float64, seed=21, settings=LangevinSettings(timestep_fs=4.0))
    batch = ReplicaRunner(
        small_model,
        [s.topology for s in systems],
        np.concatenate([s.positions_nm for s in systems]),
        **kwargs,
    )
    batch.step(8)
    ranges = batch.bead_ranges()
    for index in (31, 40):
        system = systems[index]
        alone = ReplicaRunner(
            small_model, [system.topology], system.positions_nm, replica_ids=[index], **kwargs
        )
        alone.step(8)
        start, stop = ranges[index]
        torch.testing.assert_close(alone.positions, batch.positions[start:stop], rtol=0, atol=1e-10)
        torch.testing.assert_close(alone.velocities, batch.velocities[start:stop], rtol=0, atol=1e-8)
    other = ReplicaRunner(
        small_model, [chignolin.topology], chignolin.positions_nm, replica_ids=[41], **kwargs
    )
    other.step(8)
    assert float((other.positions - batch.positions[slice(*ranges[40])]).abs().max()) > 1e-4


def test_checkpoint_restart_equals_the_uninterrupted_run(
    small_model, chignolin, villin, tmp_path, one_thread
):
    topologies = [chignolin.topology, villin.topology]
    positions = np.concatenate([chignolin.positions_nm, villin.positions_nm])
    kwargs = dict(
        dtype=torch.float32, seed=5, thermostat_temperatures_k=[280.0, 330.0], frictions_per_ps=[1, 3]
    )
    straight = ReplicaRunner(small_model, topologies, positions, **kwargs)
    straight.step(12)
    first = ReplicaRunner(small_model, topologies, positions, **kwargs)
    first.step(5)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, first.state(), frames_written=[1, 1])
    document = load_checkpoint(path)
    resumed = ReplicaRunner(small_model, topologies, positions, **kwargs)  # fresh object, fresh lists
    resumed.load_state(document)
    resumed.step(7)
    assert resumed.steps_done == 12
    for name in ("positions", "velocities", "forces", "energies"):
        assert torch.equal(getattr(resumed, name), getattr(straight, name)), name


def test_checkpoint_writes_are_atomic_and_bad_files_are_named(chignolin, tmp_path, monkeypatch, one_thread):
    r = runner(chignolin, replicas=2)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, r.state(), [1, 1])
    good = path.read_bytes()
    r.step(2)

    def crash(document, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, r.state(), [1, 1])
    monkeypatch.undo()
    assert path.read_bytes() == good and load_checkpoint(path)["step"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    document = torch.load(path, weights_only=True)
    document["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(document, newer)
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(newer)
    document["format_version"] = 1
    document["positions_nm"] = document["positions_nm"][:10]
    torch.save(document, newer)
    with pytest.raises(CheckpointError, match="positions_nm"):
        load_checkpoint(newer)


def test_failures_name_poisoned_and_overheated_replicas(chignolin, one_thread):
    r = runner(chignolin, replicas=4)
    n = chignolin.topology.n_beads
    r.positions[n + 4, 1] = float("nan")
    r.velocities[3 * n : 4 * n] *= 100.0
    r.energies, r.forces = r.evaluate(r.positions)
    failures = r.failures([3000.0] * 4)
    assert sorted(failures) == [1, 3]
    assert "non-finite" in failures[1] and "temperature" in failures[3]
    with pytest.raises(Exception, match=r"replica\(s\) \[1\]"):
        r.check_finite()


def test_bad_inputs_are_rejected(chignolin):
    model = load_model("default")
    positions = np.array(chignolin.positions_nm)
    positions[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ReplicaRunner(model, [chignolin.topology], positions)
    with pytest.raises(ValueError, match="shape"):
        ReplicaRunner(model, [chignolin.topology], chignolin.positions_nm[:10])
    with pytest.raises(ValueError, match="timestep_fs"):
        LangevinSettings(timestep_fs=0.0)
    with pytest.raises(ValueError, match="replicas"):
        ReplicaRunner.replicas_of(model, chignolin, 0)
    with pytest.raises(ValueError, match="thermostat_temperatures_k has 3 values"):
        ReplicaRunner.replicas_of(model, chignolin, 2, thermostat_temperatures_k=[300, 310, 320])
    with pytest.raises(ValueError, match="frictions_per_ps must be finite and >= 0; replica 1"):
        ReplicaRunner.replicas_of(model, chignolin, 2, frictions_per_ps=[1.0, -1.0])
    with pytest.raises(ValueError, match="replica_ids"):
        ReplicaRunner.replicas_of(model, chignolin, 2, replica_ids=[3, 3])


def test_bench_plot_lines_differ_by_marker_and_style():
    """Each series has its own marker and line style, not only a colour; the legend sits beside."""
    from dataclasses import replace

    from gnnmd.engine.bench import BenchResult
    from gnnmd.sim.plots import ns_per_day_figure

    row = BenchResult(system="chignolin", beads=49, replicas=1, steps=1, warmup_steps=0, dt_fs=4.0,
                      backend="reference", device="cpu", dtype="float32", engine="replica-runner",
                      model="default", model_trained=False, ns_per_day=1.0, ns_per_day_per_replica=1.0,
                      steps_per_second=1.0, ms_per_step=1.0, peak_memory_mb=1.0, peak_memory_kind="x",
                      final_mean_temperature_k=300.0)  # fmt: skip
    backends = ["reference", "fused", "fused16", "tabulated", "other"]
    rows = [replace(row, backend=b, replicas=r, ns_per_day=r * (i + 1.0))
            for i, b in enumerate(backends) for r in (1, 8)]  # fmt: skip
    figure = ns_per_day_figure(rows)
    (axes,) = figure.axes
    lines = axes.get_lines()
    assert len(lines) == 5
    assert len({(line.get_marker(), line.get_linestyle()) for line in lines}) == 5
    figure.canvas.draw()
    legend = axes.get_legend().get_window_extent()
    assert legend.x0 >= axes.get_window_extent().x1  # beside the data, not over it


def test_a_force_provider_replaces_the_force_path_and_is_rebuilt_when_replicas_drop(chignolin, one_thread):
    """A harmonic trap per bead as the provider: the runner's energies and forces are its, the
    integrator is the runner's, and dropping a replica builds a new provider for those left."""
    spring = 100.0  # kJ/mol/nm²
    built, released = [], []

    class Trap:
        def __init__(self, topologies, anchor):
            self.anchor, self.counts = anchor, [t.n_beads for t in topologies]

        def __call__(self, positions):
            offset = positions - self.anchor
            per_bead = 0.5 * spring * (offset * offset).sum(dim=1)
            energies = torch.stack([part.sum() for part in per_bead.split(self.counts)])
            return energies, -spring * offset

        def release(self):
            released.append(self)

    def factory(model, topologies, device):
        built.append(len(topologies))
        native = torch.as_tensor(chignolin.positions_nm, dtype=torch.float64, device=device)
        return Trap(topologies, native.repeat(len(topologies), 1))

    r = runner(chignolin, replicas=3, forces=factory, dtype=torch.float64, skin_nm=0.5)
    assert r.skin_nm == 0.0 and r.verlet is None and built == [3]
    r.step(20)
    offset = r.positions - torch.as_tensor(chignolin.positions_nm).repeat(3, 1)
    torch.testing.assert_close(r.forces, -spring * offset)
    assert r.neighbor_list_builds() == 21 * 3  # no Verlet list: every step counts as a build
    r.drop([1])
    assert built == [3, 2] and len(released) == 1 and r.num_replicas == 2
    r.step(5)
    r.release()
    assert len(released) == 2
    with pytest.raises(ValueError, match="not a force provider"):
        runner(chignolin, replicas=1, forces=factory, cuda_graph=True)
