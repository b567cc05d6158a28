"""Chiral input: mirror images get different energies, every backend agrees, gradients are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.models import load_model, save_checkpoint
from gnnmd.nn.backends import use_backend
from gnnmd.nn.chirality import dihedral_features
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.systems import load_system


def model_for(topology, chiral: bool, seed: int = 0, **config) -> CGPotential:
    torch.manual_seed(seed)
    vocabulary = sorted(set(topology.bead_types))
    settings = dict(hidden_channels=16, num_filters=16, num_rbf=12, num_interactions=2, cutoff_nm=1.2)
    settings.update(config)
    config = PotentialConfig(use_priors=False, chiral_features=chiral, **settings)
    model = CGPotential(config, vocabulary, None)
    if chiral:
        with torch.no_grad():
            model.network.chirality.project.weight.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="module")
def chignolin():
    system = load_system("chignolin")
    return system.topology, torch.tensor(system.positions_nm)


def mirror(positions: torch.Tensor) -> torch.Tensor:
    return positions * torch.tensor([-1.0, 1.0, 1.0], dtype=positions.dtype)


def test_mirror_images_differ_only_with_chiral_input(chignolin):
    topology, x = chignolin
    for chiral in (False, True):
        model = model_for(topology, chiral).double()
        batch = model.pack([topology])
        difference = float(model(x, batch) - model(mirror(x), batch))
        if chiral:
            assert abs(difference) > 1e-3
        else:
            assert abs(difference) < 1e-9
    # Rotations and translations still leave the chiral model's energy unchanged.
    rotation = torch.tensor(np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0])
    if torch.det(rotation) < 0:
        rotation = -rotation
    model = model_for(topology, True).double()
    batch = model.pack([topology])
    moved = x @ rotation.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(model(moved, batch), model(x, batch), rtol=1e-12, atol=1e-10)


def test_fresh_chiral_model_computes_the_achiral_one(chignolin):
    topology, x = chignolin
    achiral = model_for(topology, False).double()
    torch.manual_seed(0)
    chiral = CGPotential(
        PotentialConfig(**{**achiral.config.to_dict(), "chiral_features": True}), achiral.vocabulary, None
    ).double()
    result = chiral.network.load_state_dict(achiral.network.state_dict(), strict=False)
    assert result.missing_keys == ["chirality.project.weight"] and not result.unexpected_keys
    batch = achiral.pack([topology])
    assert torch.equal(chiral(x, batch), achiral(x, batch))


def test_features_sum_each_dihedral_into_its_four_beads(chignolin):
    topology, x = chignolin
    batch = model_for(topology, True).pack([topology])
    features = dihedral_features(x, batch.dihedrals, batch.graph_index).reshape(-1, 4, 2)
    counts = torch.zeros(topology.n_beads, 4)
    for row in topology.dihedrals:
        for position, bead in enumerate(row):
            counts[bead, position] += 1
    norms = features.norm(dim=2)  # each (sin, cos) pair has norm 1; sums have norm <= count
    assert bool((norms <= counts + 1e-9).all()) and bool(((counts == 0) <= (norms == 0)).all())
    assert torch.allclose(mirror_features(x, batch)[:, :, 0], -features[:, :, 0])  # sin φ flips


def mirror_features(x, batch):
    return dihedral_features(mirror(x), batch.dihedrals, batch.graph_index).reshape(-1, 4, 2)


def test_gradcheck_and_gradgradcheck():
    topology = load_system("chignolin", "ca").topology
    positions = torch.tensor(load_system("chignolin", "ca").positions_nm, requires_grad=True)
    model = model_for(topology, True).double()
    batch = model.pack([topology])
    assert torch.autograd.gradcheck(lambda p: model(p, batch), (positions,))
    assert torch.autograd.gradgradcheck(lambda p: model(p, batch), (positions,))


@pytest.mark.parametrize("backend,tolerance", [("tabulated", 1e-3), ("fused", 1e-5)])
def test_every_backend_agrees(chignolin, backend, tolerance):
    topology, x = chignolin
    model = model_for(topology, True).float()
    batch = model.pack([topology])
    x = x.float()
    for positions in (x, mirror(x)):
        energy, forces = model.energy_and_forces(positions, batch)
        fast_energy, fast_forces = use_backend(model, backend).energy_and_forces(positions, batch)
        scale = float(forces.pow(2).mean().sqrt())
        assert float((fast_forces - forces).pow(2).mean().sqrt()) <= tolerance * scale
        assert abs(float(fast_energy - energy)) <= tolerance * max(1.0, abs(float(energy)))


def test_checkpoint_and_torchscript_keep_the_chiral_input(tmp_path, chignolin):
    topology, x = chignolin
    model = model_for(topology, True).double()
    model.metadata = {"name": "chiral", "trained": False}
    path = tmp_path / "chiral.pt"
    save_checkpoint(model, path, model.metadata)
    loaded = load_model(str(path), dtype=torch.float64)
    assert loaded.config.chiral_features
    batch = model.pack([topology])
    assert torch.equal(loaded(mirror(x), batch), model(mirror(x), batch))
    scripted = torch.jit.script(loaded)
    assert torch.allclose(scripted(mirror(x), batch), model(mirror(x), batch), rtol=1e-12, atol=0)
