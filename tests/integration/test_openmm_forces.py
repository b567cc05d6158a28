"""gnnmd forces inside OpenMM: both routes, Reference and CPU platforms, replicas, periodic boxes."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit
import pytest
import torch

from gnnmd.models import load_model
from gnnmd.openmm import PlatformSpec, create_system, energy_and_forces
from tests.conftest import perturbed

PLATFORMS = ["Reference", "CPU"]
ROUTES = ["torch", "python"]


def evaluate(system: openmm.System, positions_nm: np.ndarray, platform: str = "CPU", box_nm=None):
    """(energy kJ/mol, forces (N, 3) kJ/mol/nm) of ``system`` at ``positions_nm``."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
    )
    if box_nm is not None:
        context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box_nm))
    context.setPositions(np.asarray(positions_nm) * openmm.unit.nanometer)
    return energy_and_forces(context)


@pytest.fixture()
def one_torch_thread():
    """Run torch on one thread for the test, then restore the setting.

    Long OpenMM runs of a 49-bead model gain nothing from a second thread, and on
    a shared 2-core machine torch's OpenMP threads waiting on each other make a
    step up to 10x slower whenever another process holds a core.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shipped_model():
    return load_model("default")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("route", ROUTES)
def test_float32_model_forces_equal_model(shipped_model, chignolin, route, platform):
    """The shipped float32 model in OpenMM equals the float64 eager model to float32 tolerance."""
    x = perturbed(chignolin.positions_nm, seed=1)
    system = create_system(chignolin.topology, shipped_model, route=route, platform=PlatformSpec(platform))
    energy, forces = evaluate(system, x.numpy(), platform)
    reference = load_model("default").double()
    expected_energy, expected = reference.energy_and_forces(x, reference.pack([chignolin.topology]))
    rms = float(expected.pow(2).mean().sqrt())
    assert np.abs(forces - expected.numpy()).max() < 1e-4 * rms
    assert abs(energy - float(expected_energy.sum())) < 1e-4 * max(1.0, abs(energy))


@pytest.mark.parametrize("route", ROUTES)
def test_double_precision_forces_equal_model_exactly(small_model, chignolin, route):
    """In double precision both routes give the model's forces to rounding (every term non-trivial)."""
    x = perturbed(chignolin.positions_nm, seed=2)
    system = create_system(
        chignolin.topology, small_model, route=route, platform=PlatformSpec("CPU", "double")
    )
    energy, forces = evaluate(system, x.numpy())
    expected_energy, expected = small_model.energy_and_forces(x, small_model.pack([chignolin.topology]))
    np.testing.assert_allclose(forces, expected.numpy(), rtol=1e-9, atol=1e-9)
    assert abs(energy - float(expected_energy.sum())) < 1e-9 * max(1.0, abs(energy))


def test_create_system_leaves_the_callers_model_alone(small_model, chignolin):
    for route in ROUTES:
        create_system(chignolin.topology, small_model, route=route, platform=PlatformSpec("CPU", "single"))
    assert next(small_model.parameters()).dtype == torch.float64


@pytest.mark.parametrize("route", ROUTES)
def test_each_replica_gets_the_forces_it_gets_alone(small_model, chignolin, route):
    replicas = 3
    spec = PlatformSpec("CPU", "double")
    copies = [perturbed(chignolin.positions_nm, seed=10 + r).numpy() for r in range(replicas)]
    many = create_system(chignolin.topology, small_model, route=route, replicas=replicas, platform=spec)
    one = create_system(chignolin.topology, small_model, route=route, platform=spec)
    assert many.getNumParticles() == replicas * chignolin.topology.n_beads
    energy, forces = evaluate(many, np.concatenate(copies))
    n = chignolin.topology.n_beads
    alone = [evaluate(one, copy) for copy in copies]
    for r, (_, forces_r) in enumerate(alone):
        np.testing.assert_allclose(forces[r * n : (r + 1) * n], forces_r, rtol=1e-9, atol=1e-9)
    assert abs(energy - sum(e for e, _ in alone)) < 1e-8 * abs(energy)
    # The copies are distinct, so equal per-replica forces cannot come from one copy repeated.
    assert np.abs(alone[0][1] - alone[1][1]).max() > 1.0


def test_masses_are_bead_masses(chignolin, small_model):
    system = create_system(chignolin.topology, small_model, route="python", replicas=2)
    masses = [
        system.getParticleMass(i).value_in_unit(openmm.unit.amu) for i in range(system.getNumParticles())
    ]
    np.testing.assert_allclose(masses, np.tile(chignolin.topology.masses_amu, 2))
    assert min(masses) > 10.0


@pytest.mark.parametrize("route", ROUTES)
def test_periodic_box_reaches_the_model(small_model, chignolin, route):
    spec = PlatformSpec("CPU", "double")
    box = np.diag([6.0, 6.5, 7.0])
    periodic = create_system(chignolin.topology, small_model, route=route, box_nm=box, platform=spec)
    assert periodic.usesPeriodicBoundaryConditions()
    x = perturbed(chignolin.positions_nm, seed=3).numpy()
    _, free = evaluate(create_system(chignolin.topology, small_model, route=route, platform=spec), x)
    _, inside = evaluate(periodic, x)
    np.testing.assert_allclose(inside, free, rtol=1e-9, atol=1e-9)
    # Moving one bead by a box vector changes nothing only if the model applies the minimum image.
    shifted = x.copy()
    shifted[7] += box[1]
    _, moved = evaluate(periodic, shifted)
    np.testing.assert_allclose(moved, free, rtol=1e-8, atol=1e-8)
    _, unwrapped = evaluate(
        create_system(chignolin.topology, small_model, route=route, platform=spec), shifted
    )
    assert np.abs(unwrapped - free).max() > 1.0


def test_box_too_small_for_the_cutoff_is_refused(small_model, chignolin):
    with pytest.raises(ValueError, match=r"box too small: narrowest width 1\.5 nm .* cutoff 1 nm"):
        create_system(chignolin.topology, small_model, box_nm=np.diag([1.5, 3.0, 3.0]))
