"""The batched BAOAB replica runner: reproducible, thermostatted, and loud about blow-ups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.errors import SimulationError
from gnnmd.models import load_model
from gnnmd.sim import LangevinSettings, ReplicaRunner
from gnnmd.sim.integrators import BAOAB
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K


def runner(chignolin, replicas=2, seed=0, **kwargs):
    return ReplicaRunner.replicas_of(load_model("default"), chignolin, replicas, seed=seed, **kwargs)


def test_same_seed_same_trajectory_and_different_seed_differs(chignolin):
    a, b, c = runner(chignolin, seed=1), runner(chignolin, seed=1), runner(chignolin, seed=2)
    for r in (a, b, c):
        r.step(5)
    assert torch.equal(a.positions, b.positions)
    assert not torch.allclose(a.positions, c.positions)


def test_short_run_stays_finite_and_warms_up(chignolin):
    r = runner(chignolin, replicas=4, settings=LangevinSettings(timestep_fs=4.0, friction_per_ps=5.0))
    r.step(150)
    r.check_finite()
    assert r.energies.shape == (4,) and r.energies.grad_fn is None
    temperatures = r.temperatures_k()
    assert ((temperatures > 150) & (temperatures < 500)).all(), temperatures


def test_harmonic_oscillators_thermalise_to_target_temperature():
    """Free particles in a harmonic well: <½ m v²> per degree of freedom -> ½ kT."""
    masses = torch.full((2000,), 12.0, dtype=torch.float64)
    settings = LangevinSettings(timestep_fs=5.0, temperature_k=300.0, friction_per_ps=10.0)
    integrator = BAOAB(masses, settings, torch.Generator().manual_seed(0))
    spring = 500.0  # kJ/mol/nm²

    def harmonic(x):
        return 0.5 * spring * (x * x).sum().reshape(1), -spring * x

    x = torch.zeros(2000, 3, dtype=torch.float64)
    v = integrator.maxwell_boltzmann(x)
    f = -spring * x
    kinetic, potential = [], []
    for step in range(600):
        x, v, f, _ = integrator.step(x, v, f, harmonic)
        if step >= 200:
            kinetic.append(float((0.5 * masses[:, None] * v * v).mean()))
            potential.append(float((0.5 * spring * x * x).mean()))
    half_kt = 0.5 * BOLTZMANN_KJ_PER_MOL_K * 300.0
    assert abs(np.mean(kinetic) / half_kt - 1) < 0.02
    assert abs(np.mean(potential) / half_kt - 1) < 0.05  # BAOAB's configurational sampling is accurate


def test_poisoned_replica_is_named(chignolin):
    r = runner(chignolin, replicas=3)
    r.positions[chignolin.topology.n_beads + 4, 1] = float("nan")
    r.energies, r.forces = r.evaluate(r.positions)
    with pytest.raises(SimulationError, match=r"replica\(s\) \[1\]"):
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
