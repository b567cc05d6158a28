"""The potential: forces are -∇E, symmetries hold, batching changes nothing, TorchScript agrees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gnnmd.errors import BeadTypeError
from gnnmd.models import untrained_model
from gnnmd.nn.potential import CGPotential, PotentialConfig
from tests.conftest import SMALL_CONFIG, perturbed


def central_difference_forces(model, positions, batch, indices, step=1e-5):
    """-dE/dx by central differences for the flat coordinate ``indices``."""
    flat = positions.detach().clone().reshape(-1)
    forces = []
    for k in indices:
        plus, minus = flat.clone(), flat.clone()
        plus[k] += step
        minus[k] -= step
        e_plus = model(plus.reshape(-1, 3), batch).sum()
        e_minus = model(minus.reshape(-1, 3), batch).sum()
        forces.append(-(e_plus - e_minus) / (2 * step))
    return torch.stack(forces)


@pytest.mark.parametrize("use_priors", [True, False])
def test_forces_are_minus_energy_gradient(small_model, chignolin, use_priors):
    small_model.use_priors = use_priors
    batch = small_model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm)
    _, forces = small_model.energy_and_forces(x, batch)
    indices = np.random.default_rng(1).choice(x.numel(), size=30, replace=False)
    numeric = central_difference_forces(small_model, x, batch, indices)
    analytic = forces.reshape(-1)[indices]
    assert analytic.abs().max() > 1.0  # the check would be empty on vanishing forces
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-6)


def test_every_term_contributes(small_model, chignolin):
    """Each prior term and the network move the energy: none is silently zero."""
    batch = small_model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm)
    from gnnmd.neighbors import within_cutoff

    pairs, _, distances = within_cutoff(x, batch.pairs, batch.graph_index, small_model.cutoff_nm)
    priors = small_model.priors
    terms = {
        "bonds": priors.bonds(x, batch.bonds, priors.term_types(batch, batch.bonds), batch.graph_index),
        "angles": priors.angles(x, batch.angles, priors.term_types(batch, batch.angles), batch.graph_index),
        "dihedrals": priors.dihedrals(
            x, batch.dihedrals, priors.term_types(batch, batch.dihedrals), batch.graph_index
        ),
        "repulsion": priors.repulsion(distances, priors.term_types(batch, pairs.t())),
        "network": small_model.network(batch.types, pairs, distances),
    }
    for name, energy in terms.items():
        assert energy.abs().sum() > 1e-3, name
    total = sum(t.sum() for t in terms.values())
    torch.testing.assert_close(small_model(x, batch).sum(), total)


def random_rotation(seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.tensor(q)


def test_rotation_and_translation_invariance(small_model, chignolin):
    batch = small_model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm)
    energy, forces = small_model.energy_and_forces(x, batch)
    rotation = random_rotation(4)
    moved = x @ rotation.T + torch.tensor([1.3, -0.7, 2.1], dtype=torch.float64)
    energy_moved, forces_moved = small_model.energy_and_forces(moved, batch)
    torch.testing.assert_close(energy_moved, energy, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(forces_moved, forces @ rotation.T, rtol=1e-8, atol=1e-8)


def test_batch_equals_graphs_one_by_one(small_model, chignolin, villin):
    """Different proteins and replicas packed together give each graph its own result."""
    members = [
        (chignolin.topology, perturbed(chignolin.positions_nm, seed=1)),
        (villin.topology, perturbed(villin.positions_nm, seed=2)),
        (chignolin.topology, perturbed(chignolin.positions_nm, seed=3)),
    ]
    batch = small_model.pack([t for t, _ in members])
    energy, forces = small_model.energy_and_forces(torch.cat([x for _, x in members]), batch)
    start = 0
    for g, (topology, x) in enumerate(members):
        alone_energy, alone_forces = small_model.energy_and_forces(x, small_model.pack([topology]))
        torch.testing.assert_close(energy[g : g + 1], alone_energy, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(forces[start : start + len(x)], alone_forces, rtol=1e-10, atol=1e-10)
        start += len(x)


def test_torchscript_equals_eager(small_model, chignolin, villin):
    batch = small_model.pack([chignolin.topology, villin.topology])
    x = torch.cat([perturbed(chignolin.positions_nm), perturbed(villin.positions_nm)])
    scripted = torch.jit.script(small_model)
    energy, forces = small_model.energy_and_forces(x, batch)
    scripted_energy, scripted_forces = scripted.energy_and_forces(x, batch)
    torch.testing.assert_close(scripted_energy, energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scripted_forces, forces, rtol=1e-12, atol=1e-12)


def test_float32_close_to_float64(small_model, chignolin):
    batch = small_model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm)
    _, forces64 = small_model.energy_and_forces(x, batch)
    model32 = small_model.float()
    _, forces32 = model32.energy_and_forces(x.float(), batch)
    relative = (forces32.double() - forces64).norm() / forces64.norm()
    assert relative < 1e-5


def test_create_graph_allows_force_matching_gradients(small_model, chignolin):
    batch = small_model.pack([chignolin.topology])
    x = perturbed(chignolin.positions_nm)
    _, forces = small_model.energy_and_forces(x, batch, create_graph=True)
    (forces**2).mean().backward()
    gradients = [p.grad for p in small_model.network.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert any(g.abs().sum() > 0 for g in gradients)


def test_energies_are_detached_by_default(small_model, chignolin):
    energy, _ = small_model.energy_and_forces(
        perturbed(chignolin.positions_nm), small_model.pack([chignolin.topology])
    )
    assert energy.grad_fn is None


def test_unknown_bead_type_is_named(chignolin, villin):
    """A model whose vocabulary lacks norleucine rejects villin, naming the type and file."""
    model = untrained_model(SMALL_CONFIG, [(chignolin.topology, chignolin.positions_nm)], seed=0)
    restricted = CGPotential(
        model.config, [t for t in model.vocabulary if not t.startswith("NLE")], model.priors
    )
    with pytest.raises(BeadTypeError, match=r"NLE\.") as error:
        restricted.pack([villin.topology])
    assert "villin" in str(error.value)


def test_uncovered_prior_term_is_named(chignolin):
    """CA-only topologies have CA-CA bonds the 5-bead priors never saw."""
    from gnnmd.systems import load_system

    model = untrained_model(SMALL_CONFIG, [(chignolin.topology, chignolin.positions_nm)], seed=0)
    ca_only = load_system("chignolin", mapping="ca")
    with pytest.raises(BeadTypeError, match="bond prior has no parameters for prior types CA-CA"):
        model.pack([ca_only.topology])


def test_config_rejects_unknown_keys_and_values():
    with pytest.raises(ValueError, match="unknown model config keys"):
        PotentialConfig.from_dict({"hidden_channels": 8, "hiden": 3})
    with pytest.raises(ValueError, match="activation"):
        dataclasses.replace(SMALL_CONFIG, activation="relu6")
    with pytest.raises(ValueError, match="rbf"):
        dataclasses.replace(SMALL_CONFIG, rbf="bessel")
    with pytest.raises(ValueError, match="exclusion_order"):
        dataclasses.replace(SMALL_CONFIG, exclusion_order=5)


def test_seeded_potential_is_reproducible_and_leaves_the_callers_generator_alone():
    from gnnmd.nn.potential import seeded_potential

    config = PotentialConfig(hidden_channels=8, num_filters=8, num_interactions=1, num_rbf=4, cutoff_nm=1.0,
                             use_priors=False)  # fmt: skip
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = seeded_potential(config, ["A", "B"], None, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream goes on as if untouched
    again, other = (seeded_potential(config, ["A", "B"], None, seed=s) for s in (7, 8))
    weights = [dict(m.network.named_parameters()) for m in (first, again, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


@pytest.mark.parametrize("backend", ["reference", "fused", "fused16", "tabulated", "tabulated16"])
def test_priors_only_switches_the_network_off_on_every_backend(small_model, chignolin, backend):
    """The model with its network off (validation's ``priors_only``) is its priors alone on every
    backend, the whole-network op of the tabulated ones included (it holds its own readout)."""
    from gnnmd.nn.backends import use_backend
    from gnnmd.nn.potential import priors_only

    model = small_model.float()
    x = perturbed(chignolin.positions_nm).float()
    batch = model.pack([chignolin.topology])
    fast = use_backend(model, backend)
    alone = priors_only(fast).energy_and_forces(x, batch)
    truth = model.priors(
        x.requires_grad_(True), batch, *model.neighbor_distances(x, batch.pairs, batch.graph_index)
    )
    (gradient,) = torch.autograd.grad(truth.sum(), x)
    assert not torch.allclose(fast.energy_and_forces(x, batch)[0], truth, atol=1e-2)  # the network adds
    torch.testing.assert_close(alone[0], truth.detach(), atol=2e-3, rtol=1e-5)
    torch.testing.assert_close(alone[1], -gradient, atol=2e-3 * gradient.abs().max().item(), rtol=0)
