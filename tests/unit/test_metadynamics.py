"""Well-tempered metadynamics along a torsion (gnnmd.sim.metadynamics) and the populations it
yields (gnnmd.analysis.reweighting): the bias's arithmetic, a known free energy recovered, the
runner's biased forces against finite differences, and setups that must be refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnnmd.analysis.reweighting import biased_populations, bin_weights, group_populations, torsion_bins
from gnnmd.engine.settings import LangevinSettings
from gnnmd.models import load_model
from gnnmd.sim.metadynamics import MetadynamicsSettings, TorsionBias, TorsionMetadynamics, run_walkers
from gnnmd.sim.runner import ReplicaRunner
from gnnmd.systems import load_system
from gnnmd.units import kt_kj_per_mol

SETTINGS = MetadynamicsSettings(height_kj_per_mol=2.0, width_rad=0.3, bias_factor=5.0)


def test_a_deposit_is_a_periodic_gaussian_with_its_slope():
    bias = TorsionBias(SETTINGS, groups=2)
    group = torch.tensor([1])
    bias.deposit(torch.tensor([math.pi - 0.05]), group)
    s = torch.tensor([math.pi - 0.05, -math.pi + 0.05, 0.0])
    value, slope = bias.evaluate(s, torch.tensor([1, 1, 1]))
    expected = 2.0 * np.exp(-0.5 * (np.array([0.0, 0.1, math.pi - 0.05]) / 0.3) ** 2)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-12)  # 1° grid, cubic reads
    assert bias.value[0].abs().max() == 0  # the other group saw nothing
    # The slope table is the Gaussian's derivative, read at any s.
    points = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64)
    offset = torch.remainder(points - (math.pi - 0.05) + math.pi, 2 * math.pi) - math.pi
    derivative = -2.0 * offset / 0.09 * torch.exp(-0.5 * (offset / 0.3) ** 2)
    slope = bias.evaluate(points, group.expand(61))[1]
    np.testing.assert_allclose(slope.numpy(), derivative.numpy(), atol=1e-4 * derivative.abs().max().item())


def test_deposits_shrink_as_the_bias_grows():
    bias = TorsionBias(SETTINGS)
    for _ in range(2):
        bias.deposit(torch.tensor([0.5]), torch.tensor([0]))
    kt_delta = kt_kj_per_mol(4.0 * 300.0)
    value, _ = bias.evaluate(torch.tensor([0.5]), torch.tensor([0]))
    assert value.item() == pytest.approx(2.0 + 2.0 * math.exp(-2.0 / kt_delta), rel=1e-3)
    assert bias.deposits.tolist() == [2]
    factor = 5.0 / 4.0
    assert bias.free_energy()[0].max().item() == pytest.approx(factor * bias.value.max().item())


def ring_potential(s: torch.Tensor) -> torch.Tensor:
    """kJ/mol: two wells near ±π/2, 20 kJ/mol barriers between them, tilted by 3 sin s."""
    return 10.0 * (1.0 + torch.cos(2.0 * s)) + 3.0 * torch.sin(s)


def test_walkers_on_a_ring_recover_its_free_energy_and_populations():
    """Overdamped walkers on a ring with 8 k_B T barriers, biased by TorsionBias: F(s) comes back
    within 1 kJ/mol where U is below 15 kJ/mol, and P(s ≥ 0) within 0.03 of the exact integral."""
    settings = MetadynamicsSettings(height_kj_per_mol=0.05, width_rad=0.25, bias_factor=8.0, pace_steps=10)
    bias = TorsionBias(settings, groups=2)
    generator = torch.Generator().manual_seed(5)
    walkers = 200
    group = torch.arange(walkers) % 2
    s = torch.full((walkers,), -math.pi / 2, dtype=torch.float64)
    beta, step = 1.0 / kt_kj_per_mol(300.0), 0.004  # step = D dt, rad²
    samples = []
    for deposit in range(700):
        for _ in range(settings.pace_steps):
            x = s.clone().requires_grad_(True)
            (force,) = torch.autograd.grad(-ring_potential(x).sum(), x)
            force = force - bias.evaluate(s, group)[1]
            noise = torch.randn(walkers, generator=generator, dtype=torch.float64)
            s = s + beta * step * force + math.sqrt(2.0 * step) * noise
        bias.deposit(s, group)
        if deposit >= 100:
            samples.append(np.remainder(s.numpy() + math.pi, 2 * math.pi) - math.pi)
    grid = bias.grid
    exact = ring_potential(grid).numpy()
    exact -= exact.min()
    low = exact < 15.0
    for free in bias.free_energy().numpy():
        shift = np.mean((free - exact)[low])
        assert np.abs(free - exact - shift)[low].max() < 1.0
    boltzmann = np.exp(-beta * exact)
    exact_right = boltzmann[grid.numpy() >= 0].sum() / boltzmann.sum()
    angles = np.stack([np.concatenate(samples), np.zeros(len(samples) * walkers)], axis=1)
    owners = np.tile(group.numpy(), len(samples))
    result = biased_populations("phi_psi", angles, owners, 0, bias.free_energy().numpy(), 300.0)
    assert result["populations"]["alpha_L"]["population"] == pytest.approx(exact_right, abs=0.03)
    assert result["unsampled_weight"] < 1e-3


def test_populations_weigh_bins_by_the_free_energy_and_report_unsampled_weight():
    flat = np.zeros(360)
    assert bin_weights(flat, 300.0).sum() == pytest.approx(1.0)
    assert torsion_bins(np.array([-math.pi, 0.0, math.pi - 1e-9, math.pi])).tolist() == [0, 36, 71, 0]
    # Samples only in φ < 0, half of them helical: with a flat F, half the weight is unsampled.
    phi = np.linspace(-3.1, -0.1, 400)
    psi = np.where(np.arange(400) % 2 == 0, -0.5, 2.5)
    populations, unsampled = group_populations("phi_psi", np.stack([phi, psi], 1), 0, flat, 300.0)
    assert unsampled == pytest.approx(0.5, abs=0.02)
    assert populations["alpha_R"] == pytest.approx(0.5, abs=0.02)
    assert populations["alpha_L"] == 0.0
    with pytest.raises(ValueError, match="equal bins"):
        bin_weights(np.zeros(100), 300.0)


@pytest.fixture(scope="module")
def ala2():
    system = load_system("ala2")
    return load_model("ala2", dtype=torch.float64), system


def test_biased_forces_are_the_model_plus_minus_the_bias_gradient(ala2):
    model, system = ala2
    topology = system.topology
    bias = TorsionBias(SETTINGS, groups=2)
    for centre in (-2.0, -1.2, 1.0):
        bias.deposit(torch.tensor([centre, centre + 0.3]), torch.tensor([0, 1]))
    walkers = TorsionMetadynamics(bias, topology.dihedrals[0], [0, 1])
    provider = walkers(model, [topology] * 2, torch.device("cpu"))
    rng = np.random.default_rng(3)
    positions = torch.as_tensor(
        np.concatenate(
            [system.positions_nm + rng.normal(0, 0.02, system.positions_nm.shape) for _ in range(2)]
        )
    )
    energies, forces = provider(positions)
    plain_energies, plain_forces = model.energy_and_forces(positions, model.pack([topology] * 2))
    phi = provider.torsions(positions)
    bias_energy, _ = bias.evaluate(phi, walkers.group)
    np.testing.assert_allclose((energies - plain_energies).numpy(), bias_energy.numpy(), atol=1e-10)
    h = 1e-6
    for bead in range(positions.shape[0]):
        for axis in range(3):
            shifted = [positions.clone(), positions.clone()]
            shifted[0][bead, axis] += h
            shifted[1][bead, axis] -= h
            plus, minus = (bias.evaluate(provider.torsions(x), walkers.group)[0].sum() for x in shifted)
            numeric = -(plus - minus) / (2 * h)
            assert (forces - plain_forces)[bead, axis].item() == pytest.approx(numeric.item(), abs=1e-5)


def test_walkers_deposit_per_group_and_refuse_what_would_corrupt_the_bias(ala2):
    model, system = ala2
    topology = system.topology
    bias = TorsionBias(MetadynamicsSettings(pace_steps=20), groups=2)
    walkers = TorsionMetadynamics(bias, topology.dihedrals[0], [0, 1, 0, 1])
    start = np.tile(system.positions_nm, (4, 1))
    runner = ReplicaRunner(
        model, [topology] * 4, start, LangevinSettings(timestep_fs=2.0), seed=2, forces=walkers
    )
    frames = run_walkers(runner, walkers, 5)
    assert frames.shape == (5, 4, topology.n_beads, 3)
    assert bias.deposits.tolist() == [10, 10]
    assert (bias.value > 0).any(dim=1).all()
    with pytest.raises(ValueError, match="dropped replica"):
        runner.drop([0])
    with pytest.raises(ValueError, match="groups must lie"):
        TorsionMetadynamics(bias, topology.dihedrals[0], [0, 2])
    with pytest.raises(ValueError, match="four beads"):
        TorsionMetadynamics(bias, [0, 1, 2], [0])
    plain = ReplicaRunner(model, [topology], system.positions_nm, seed=2)
    with pytest.raises(ValueError, match="not this metadynamics"):
        run_walkers(plain, walkers, 1)
    with pytest.raises(ValueError, match="bias_factor"):
        MetadynamicsSettings(bias_factor=1.0)
    with pytest.raises(ValueError, match="width_rad must be at most"):
        MetadynamicsSettings(width_rad=1.0)


def test_a_walker_that_blows_up_stops_the_run_before_it_deposits(ala2):
    from gnnmd.errors import SimulationError

    model, system = ala2
    bias = TorsionBias(MetadynamicsSettings(pace_steps=5))
    walkers = TorsionMetadynamics(bias, system.topology.dihedrals[0], [0])
    runner = ReplicaRunner(model, [system.topology], system.positions_nm, seed=2, forces=walkers)
    runner.positions[0, 0] = float("nan")
    with pytest.raises(SimulationError, match="non-finite"):
        run_walkers(runner, walkers, 1)
    assert bias.deposits.tolist() == [0] and torch.isfinite(bias.value).all()
