"""Energy + force training: per-type reference energies, the weighted loss, errors on bad data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.data.dataset import DatasetError, ForceDataset, write_molecule
from gnnmd.models import load_model
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.topology import custom_topology
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.batches import BatchLoader
from gnnmd.train.loop import fit_type_energies
from tests.unit.test_training import student, teacher_dataset

#: All-atom style: element types, no priors, every pair inside the cutoff.
ATOMS_CONFIG = PotentialConfig(
    hidden_channels=16, num_filters=16, num_interactions=1, num_rbf=8, cutoff_nm=0.6,
    use_priors=False, exclusion_order=0,
)  # fmt: skip
ENERGY_CONFIG = TrainingConfig(
    epochs=4, batch_size=8, learning_rate=3e-3, validation_fraction=0.25, seed=1, energy_weight=0.1
)


def atoms_molecule(name: str, types: list[str], frames: int, seed: int) -> tuple:
    """A small cluster of 'atoms' of the given element types: (topology, positions (F, n, 3) nm)."""
    topology = custom_topology(name, types, [12.0] * len(types), bonds=[])
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 0.4, (len(types), 3))
    return topology, base[None] + rng.normal(0.0, 0.01, (frames, len(types), 3))


def test_type_energy_fit_recovers_known_per_type_offsets(tmp_path):
    """E_ref = E_model + Σ_t n_t e_t on two molecules of different composition: e_t comes back exactly."""
    torch.manual_seed(0)
    model = CGPotential(ATOMS_CONFIG, ["C", "H"], None).double()
    offsets = {"C": -1500.25, "H": -40.5}  # kJ/mol per atom
    path = tmp_path / "atoms.h5"
    for name, types, seed in (("a", ["C", "H", "H", "H"], 1), ("b", ["C", "C", "H"], 2)):
        topology, x = atoms_molecule(name, types, frames=6, seed=seed)
        energies, forces = model.energy_and_forces(torch.tensor(x.reshape(-1, 3)), model.pack([topology] * 6))
        shifted = energies.numpy() + sum(offsets[t] for t in types)
        write_molecule(path, topology, x, forces.reshape(6, -1, 3).numpy(), shifted)
    dataset = ForceDataset(path)
    loader = BatchLoader(dataset, model, torch.device("cpu"), energies=True)
    frames = {0: np.arange(6), 1: np.arange(6, 12)}
    fitted = fit_type_energies(model, loader, frames, torch.float64)
    torch.testing.assert_close(fitted, torch.tensor([offsets["C"], offsets["H"]], dtype=torch.float64))


def test_energy_training_fits_offset_lowers_both_errors_and_records_them(tmp_path, chignolin):
    """Teacher energies shifted by 1e4 kJ/mol: the fit absorbs the shift, training lowers both RMSEs."""
    offset = 1.0e4
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin, energy_offset=offset)
    untouched = student(teacher, 5)
    trainer = Trainer(student(teacher, 5), dataset, ENERGY_CONFIG, tmp_path / "run")
    # Before any step: the per-type energies took the offset (and the student's own mean) away.
    before = trainer.validate()
    assert before.energy_rmse < 0.01 * offset
    history = trainer.run()
    after = trainer.validate()
    assert after.energy_rmse < before.energy_rmse
    assert after.force_rmse < before.force_rmse
    best = load_model(tmp_path / "run" / "best.pt")
    training = best.metadata["training"]
    best_row = min(history, key=lambda row: row["val_loss"])
    assert training["val_energy_rmse_kj_per_mol"] == best_row["val_energy_rmse"]
    assert training["val_force_rmse_kj_per_mol_nm"] == best_row["val_force_rmse"]
    assert training["config"]["energy_weight"] == ENERGY_CONFIG.energy_weight
    # The type energies travel with the checkpoint: the model's energies sit on the data's scale.
    positions, _ = dataset.frames(0, [0, 1])
    batch = best.pack([chignolin.topology] * 2)
    energies, _ = best.double().energy_and_forces(
        torch.tensor(positions.reshape(-1, 3), dtype=torch.float64), batch
    )
    reference = torch.as_tensor(dataset.energies(0, [0, 1]))
    assert (energies - reference).abs().max() < 0.01 * offset
    raw, _ = untouched.energy_and_forces(torch.tensor(positions.reshape(-1, 3), dtype=torch.float64), batch)
    assert (raw - reference).abs().min() > 0.5 * offset
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_energy_rmse", "val_energy_rmse", "val_loss"} <= set(header)


def test_energy_weight_needs_energies_in_every_molecule(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "forces_only.h5", chignolin)
    with pytest.raises(DatasetError, match=r"forces_only\.h5.*chignolin.*no 'energies'"):
        Trainer(student(teacher, 5), dataset, ENERGY_CONFIG, tmp_path / "run")
    with pytest.raises(DatasetError, match="no 'energies'"):
        dataset.energies(0)


def test_weights_are_checked():
    with pytest.raises(ValueError, match="not all zero"):
        TrainingConfig(force_weight=0.0, energy_weight=0.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        TrainingConfig(energy_weight=-1.0)


def test_checkpoints_without_type_energies_load_with_zeros(chignolin):
    model = load_model("chignolin")
    state = {k: v for k, v in model.network.state_dict().items() if k != "type_energy"}
    fresh = CGPotential(model.config, model.vocabulary, model.priors)
    fresh.network.type_energy.fill_(3.0)
    fresh.network.load_state_dict(state)
    assert torch.equal(fresh.network.type_energy, torch.zeros(len(model.vocabulary)))


def test_cli_train_with_energy_weight(tmp_path, chignolin, capsys):
    from gnnmd.cli import main

    # 120 frames: the CLI fits priors by Boltzmann inversion, which needs 100 samples per term.
    teacher_dataset(tmp_path / "d.h5", chignolin, frames=120, energy_offset=-250.0)
    config = tmp_path / "small.json"
    config.write_text(
        '{"hidden_channels": 16, "num_filters": 16, "num_interactions": 1, "num_rbf": 8, "cutoff_nm": 1.0}'
    )
    arguments = ["train", "--data", str(tmp_path / "d.h5"), "-o", str(tmp_path / "run"), "--model-config",
                 str(config), "--epochs", "2", "--batch-size", "40", "--energy-weight", "0.2"]  # fmt: skip
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert "energy train" in output and "energy RMSE" in output
    teacher_dataset(tmp_path / "f.h5", chignolin, frames=120)
    arguments[2] = str(tmp_path / "f.h5")
    arguments[4] = str(tmp_path / "run2")
    assert main(arguments) != 0
    assert "no 'energies'" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["reference", "tabulated", "fused16"])
def test_type_energies_reach_exported_and_converted_models(chignolin, backend):
    """Per-type energies shift the energy, not the forces, in every engine the model goes to."""
    from gnnmd.export import export_potential
    from gnnmd.nn.backends import use_backend

    model = load_model("chignolin")
    shifted = load_model("chignolin")
    torch.manual_seed(0)
    shifted.network.type_energy.copy_(torch.randn(len(shifted.vocabulary)) * 100.0)
    if backend != "reference":
        model, shifted = use_backend(model, backend), use_backend(shifted, backend)
    expected_shift = float(shifted.network.type_energy[model.pack([chignolin.topology]).types].sum())
    x = torch.as_tensor(chignolin.positions_nm, dtype=torch.float32)
    batch = model.pack([chignolin.topology])
    energy, forces = model.energy_and_forces(x, batch)
    energy_shifted, forces_shifted = shifted.energy_and_forces(x, batch)
    torch.testing.assert_close(energy_shifted - energy, torch.tensor([expected_shift]), rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(forces_shifted, forces)
    if backend == "reference":
        exported = export_potential(shifted, chignolin.topology, forces=True)
        got_energy, got_forces = exported(x)
        torch.testing.assert_close(got_energy, energy_shifted.sum(), rtol=1e-6, atol=1e-3)
        torch.testing.assert_close(got_forces, forces_shifted)


def test_training_loss_ignores_a_constant_energy_offset(tmp_path, chignolin):
    """The energy term compares energies relative to the batch mean: +1e4 kJ/mol changes no gradient."""
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin, energy_offset=0.0)
    trainer = Trainer(student(teacher, 5), dataset, ENERGY_CONFIG, tmp_path / "run")
    trainer.force_model.train()
    batch = trainer.loader(trainer.global_batches(0)[0], torch.float64)
    gradients = []
    for shift in (0.0, 1.0e4):
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.loss(trainer.errors(batch._replace(energies=batch.energies + shift))).backward()
        gradients.append([p.grad.clone() for p in trainer.model.network.parameters()])
    for plain, shifted in zip(*gradients, strict=True):
        torch.testing.assert_close(shifted, plain, rtol=1e-9, atol=1e-9)
    assert any(g.abs().sum() > 0 for g in gradients[0])
