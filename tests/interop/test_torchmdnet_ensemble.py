"""A TorchMD-Net ensemble (a zip of checkpoints) imports as one model computing the members' mean,
equal to TorchMD-Net's own ``Ensemble`` (which ``load_model`` returns for a zip)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from gnnmd.errors import ImportModelError
from gnnmd.interop import torchmdnet as tmn
from gnnmd.interop.importing import import_torchmdnet
from gnnmd.models import load_model
from gnnmd.nn.backends import use_backend
from gnnmd.nn.ensemble import ensemble_mean
from gnnmd.systems import load_system
from tests.interop.test_torchmdnet_import import OPTIONS, reference, save_checkpoint

pytest.importorskip("torchmdnet", reason="the comparison runs TorchMD-Net itself (test extras)")


def ensemble_zip(tmp_path, members: int, **options):
    path = tmp_path / "ensemble.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for seed in range(members):
            archive.write(save_checkpoint(tmp_path / f"m{seed}.ckpt", seed=seed, **options), f"m{seed}.ckpt")
    return path



@pytest.mark.parametrize("option", ["expnorm-neighbours-silu", "gauss-ssp", "atomref-sigmoid"])
def test_ensemble_mean_equals_torchmdnet_ensemble(tmp_path, option):
    path = ensemble_zip(tmp_path, 3, **OPTIONS[option])
    system = load_system("chignolin", "ca")
    model, topology = import_torchmdnet(path, system.pdb_path, output=tmp_path / "mean.pt")
    types = tmn.torchmd_cg_types()
    z = torch.tensor([types[t] for t in topology.bead_types])
    positions = np.asarray(system.positions_nm, dtype=np.float64)
    expected_energy, expected_forces = reference(path, z, positions)  # TorchMD-Net's Ensemble
    energy, forces = model.energy_and_forces(torch.tensor(positions), model.pack([topology]))
    assert abs(float(energy[0]) - expected_energy) <= 1e-5 * abs(expected_energy)
    scale = float(expected_forces.pow(2).mean().sqrt())
    assert float((forces - expected_forces).abs().max()) <= 1e-5 * scale
    # Written and read back like any checkpoint, with its members recorded; the fast backends run it.
    loaded = load_model(tmp_path / "mean.pt", dtype=torch.float64)
    members = loaded.metadata["imported_from"]["ensemble_members"]
    assert [m["file"] for m in members] == [f"ensemble.zip:m{k}.ckpt" for k in range(3)]
    assert loaded.config.hidden_channels == 3 * 32
    fast = use_backend(loaded, "tabulated")
    _, fast_forces = fast.energy_and_forces(torch.tensor(positions), fast.pack([topology]))
    assert float((fast_forces - expected_forces).pow(2).mean().sqrt()) <= 1e-3 * scale


def test_members_of_different_architectures_are_refused(tmp_path):
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(save_checkpoint(tmp_path / "a.ckpt", seed=0), "a.ckpt")
        archive.write(save_checkpoint(tmp_path / "b.ckpt", seed=1, num_layers=3), "b.ckpt")
    system = load_system("chignolin", "ca")
    with pytest.raises(ImportModelError, match=r"mixed.zip: member 1 has num_interactions=3, member 0 2"):
        import_torchmdnet(path, system.pdb_path)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "no checkpoints")
    with pytest.raises(ImportModelError, match="empty.zip: the zip holds no .ckpt file"):
        import_torchmdnet(empty, system.pdb_path)
    with pytest.raises(ImportModelError, match="at least one member"):
        ensemble_mean([])
