"""Exported TorchScript equals the eager model, in torch and inside OpenMM's TorchForce."""

from __future__ import annotations

import numpy as np
import openmm
import openmmtorch
import pytest
import torch

from gnnmd.errors import BeadTypeError
from gnnmd.export import export_potential, exported_metadata, save_exported
from gnnmd.models import load_model
from tests.conftest import perturbed

REPLICAS = 3


@pytest.fixture()
def replicated_positions(chignolin):
    return torch.cat([perturbed(chignolin.positions_nm, seed=s) for s in range(REPLICAS)])


@pytest.mark.parametrize("forces", [False, True])
def test_exported_module_equals_eager(small_model, chignolin, replicated_positions, tmp_path, forces):
    path = save_exported(small_model, chignolin.topology, tmp_path / "m.pt", REPLICAS, forces, torch.float64)
    module = torch.jit.load(str(path))
    energy, expected_forces = small_model.energy_and_forces(
        replicated_positions, small_model.pack([chignolin.topology] * REPLICAS)
    )
    if forces:
        got_energy, got_forces = module(replicated_positions)
        torch.testing.assert_close(got_forces, expected_forces, rtol=1e-12, atol=1e-10)
    else:
        x = replicated_positions.clone().requires_grad_(True)
        got_energy = module(x)
        got_energy.backward()
        torch.testing.assert_close(-x.grad, expected_forces, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(got_energy, energy.sum(), rtol=1e-12, atol=1e-10)
    metadata = exported_metadata(path)
    assert metadata["replicas"] == REPLICAS and metadata["particles"] == REPLICAS * chignolin.topology.n_beads
    assert metadata["trained"] is False and metadata["outputs_forces"] is forces


def test_float32_export_accepts_float64_positions(chignolin, tmp_path):
    model = load_model("default")
    path = save_exported(model, chignolin.topology, tmp_path / "m.pt")
    x = perturbed(chignolin.positions_nm)
    energy = torch.jit.load(str(path))(x).detach()
    expected = model.double()(x, model.pack([chignolin.topology])).sum().detach()
    assert energy.dtype == torch.float32
    assert abs(float(energy) - float(expected)) < 1e-4 * max(1.0, abs(float(expected)))


def test_export_leaves_the_callers_model_alone(chignolin, tmp_path):
    model = load_model("default")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    save_exported(model, chignolin.topology, tmp_path / "m.pt", dtype=torch.float64)
    for name, value in model.state_dict().items():
        assert value.dtype == before[name].dtype and torch.equal(value, before[name]), name


def test_periodic_box(small_model, chignolin, tmp_path):
    path = save_exported(small_model, chignolin.topology, tmp_path / "m.pt", dtype=torch.float64)
    module = torch.jit.load(str(path))
    x = perturbed(chignolin.positions_nm)
    large = torch.eye(3, dtype=torch.float64) * 10.0
    torch.testing.assert_close(module(x, large), module(x), rtol=1e-12, atol=1e-12)
    # Shifting one bead by a box vector changes nothing under periodic boundaries.
    shifted = x.clone()
    shifted[5] += large[1]
    torch.testing.assert_close(module(shifted, large), module(x, large), rtol=1e-10, atol=1e-10)
    with pytest.raises(Exception, match="box too small"):
        module(x, torch.eye(3, dtype=torch.float64) * 1.5)


def test_export_refuses_uncovered_topology(chignolin, tmp_path):
    from gnnmd.systems import load_system

    with pytest.raises(BeadTypeError):
        save_exported(
            load_model("default"), load_system("chignolin", mapping="ca").topology, tmp_path / "m.pt"
        )


def openmm_forces(path, masses, positions, platform, outputs_forces=False):
    system = openmm.System()
    for mass in masses:
        system.addParticle(float(mass))
    force = openmmtorch.TorchForce(str(path))
    force.setOutputsForces(outputs_forces)
    system.addForce(force)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
    )
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    )
    return energy, np.asarray(forces)


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("outputs_forces", [False, True])
def test_torchforce_matches_model(
    small_model, chignolin, replicated_positions, tmp_path, platform, outputs_forces
):
    path = save_exported(
        small_model, chignolin.topology, tmp_path / "m.pt", REPLICAS, outputs_forces, torch.float64
    )
    masses = np.tile(chignolin.topology.masses_amu, REPLICAS)
    energy, forces = openmm_forces(path, masses, replicated_positions.numpy(), platform, outputs_forces)
    expected_energy, expected_forces = small_model.energy_and_forces(
        replicated_positions, small_model.pack([chignolin.topology] * REPLICAS)
    )
    assert abs(energy - float(expected_energy.sum())) < 1e-8 * max(1.0, abs(energy))
    np.testing.assert_allclose(forces, expected_forces.numpy(), rtol=1e-8, atol=1e-8)


def test_torchforce_float32_within_tolerance(chignolin, tmp_path):
    """The shipped float32 export in OpenMM: forces within 1e-5 of the float64 force RMS."""
    model = load_model("default")
    path = save_exported(model, chignolin.topology, tmp_path / "m.pt")
    x = perturbed(chignolin.positions_nm)
    _, forces = openmm_forces(path, chignolin.topology.masses_amu, x.numpy(), "CPU")
    _, expected = model.double().energy_and_forces(x, model.pack([chignolin.topology]))
    rms = float(expected.pow(2).mean().sqrt())
    assert np.abs(forces - expected.numpy()).max() < 1e-5 * rms * 10


@pytest.mark.parametrize("forces", [False, True])
def test_exported_module_names_the_particle_counts(chignolin, forces):
    """A module exported for chignolin x 2 given another protein's positions: both counts named."""
    module = export_potential(load_model("default"), chignolin.topology, replicas=2, forces=forces)
    with pytest.raises(Exception, match=r"exported for 98 particles \(2 replica\(s\)\); it got positions of "
                       r"shape \[49, 3\]"):  # fmt: skip
        module(torch.tensor(chignolin.positions_nm, dtype=torch.float32))
