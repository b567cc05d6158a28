"""Choosing models by a held-out free-energy measure, and the training loader's in-memory frames."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from gnnmd.analysis.selection import HeldOutFreeEnergy, selection_settings
from gnnmd.analysis.validate import simulate
from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.models import load_model
from gnnmd.nn.potential import PotentialConfig, priors_only
from gnnmd.systems import DroppedAtomsWarning, load_system
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.batches import BatchLoader
from gnnmd.train.setup import model_for_dataset

TINY = PotentialConfig(hidden_channels=8, num_filters=8, num_interactions=1, num_rbf=8, cutoff_nm=1.0)
#: 8 replicas x 600 steps: fast, and enough to tell a model from one with its dihedrals skewed.
SETTINGS = selection_settings(replicas=8, steps=600, temperature_k=300.0, seed=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """ala2 frames sampled by a priors-only model (8 trajectories), with its mean forces as labels,
    and that model: the reference's own potential."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedAtomsWarning)
        ala2 = load_system("ala2")
    folder = tmp_path_factory.mktemp("selection")
    rng = np.random.default_rng(0)
    seed_frames = ala2.positions_nm[None] + rng.normal(0, 0.01, (128, 5, 3))
    write_molecule(folder / "seed.h5", ala2.topology, seed_frames, np.zeros_like(seed_frames))
    truth = priors_only(model_for_dataset(ForceDataset(folder / "seed.h5"), TINY, 300.0, seed=0))
    starts = np.repeat(ala2.positions_nm[None], 8, axis=0)
    frames, owners, _ = simulate(truth, ala2.topology, starts, selection_settings(8, 3000, 300.0, 1))
    batch = truth.pack([ala2.topology] * len(frames))
    _, forces = truth.energy_and_forces(torch.tensor(frames.reshape(-1, 3), dtype=torch.float32), batch)
    path = folder / "reference.h5"
    write_molecule(
        path, ala2.topology, frames, forces.detach().numpy().reshape(frames.shape), trajectories=owners
    )
    return ForceDataset(path), truth


def skewed(model):
    """The model with a strong extra torsion term: a different φ/ψ free energy."""
    other = priors_only(model)
    with torch.no_grad():
        other.priors.dihedrals.sin_coefficients.add_(8.0)
    return other


def test_the_score_prefers_the_references_own_potential(reference):
    dataset, truth = reference
    held_out = np.flatnonzero(np.isin(dataset.trajectory_ids[0], [0, 1, 2]))
    scorer = HeldOutFreeEnergy(dataset, held_out, SETTINGS)
    assert len(scorer.molecules) == 1
    assert all(len(o.samples) == len(held_out) for o in scorer.molecules[0].reference)
    right, wrong = scorer(truth), scorer(skewed(truth))
    assert right < 0.5 * wrong, (right, wrong)
    assert scorer.divergences(truth) == {"ala2": right}  # the φ/ψ map is ala2's main observable
    with pytest.raises(ValueError, match="no held-out frames"):
        HeldOutFreeEnergy(dataset, np.array([], dtype=np.int64), SETTINGS)


def test_training_picks_the_epoch_of_lowest_free_energy_score(reference, tmp_path):
    dataset, truth = reference
    config = TrainingConfig(epochs=3, batch_size=64, learning_rate=3e-2, select_by="free_energy",
                            validation_fraction=0.25, seed=0)  # fmt: skip
    with pytest.raises(ValueError, match="needs scorer_for"):
        Trainer(model_for_dataset(dataset, TINY, 300.0, 0), dataset, config, tmp_path / "none")
    seen = []

    def scorer_for(held_out):
        scorer = HeldOutFreeEnergy(dataset, held_out, SETTINGS)
        return lambda model: seen.append(scorer(model)) or seen[-1]

    model = model_for_dataset(dataset, TINY, 300.0, 0)
    trainer = Trainer(
        model, dataset, config, tmp_path / "run", metadata={"temperature_k": 300.0}, scorer_for=scorer_for
    )
    history = trainer.run()
    assert [row["val_free_energy_js"] for row in history] == seen and len(seen) == 3
    training = load_model(tmp_path / "run" / "best.pt").metadata["training"]
    assert training["selected_by"] == "free_energy"
    assert training["epoch"] == int(np.argmin(seen)) + 1 and training["val_free_energy_js"] == min(seen)
    assert "val_free_energy_js" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    with pytest.raises(ValueError, match="select_by must be one of"):
        TrainingConfig(select_by="energy")


def test_cli_selects_by_free_energy(reference, tmp_path, capsys):
    from gnnmd.cli import main

    dataset, _ = reference
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_rbf": 8,
                                  "cutoff_nm": 1.0}))  # fmt: skip
    argv = ["train", "--data", str(dataset.path), "-o", str(tmp_path / "run"), "--model-config", str(config),
            "--epochs", "1", "--batch-size", "64", "--patience", "3", "--weight-average-decay", "0.5",
            "--select-by", "free_energy", "--selection-replicas", "4",
            "--selection-steps", "120", "--validation-fraction", "0.25"]  # fmt: skip
    assert main(argv) == 0
    assert "held-out free-energy JS" in capsys.readouterr().out
    training = load_model(tmp_path / "run" / "best.pt").metadata["training"]
    assert training["config"]["selection_steps"] == 120 and training["selected_by"] == "free_energy"
    assert (
        training["config"]["early_stopping_patience"] == 3
        and training["config"]["weight_average_decay"] == 0.5
    )
    # A resumed run scores epochs the same way, or it is refused.
    assert main(argv[:-4] + ["--selection-steps", "240", "--validation-fraction", "0.25"]) == 2
    assert "selection_steps" in capsys.readouterr().err


def test_loader_frames_in_memory_equal_frames_read_from_the_file(reference):
    dataset, truth = reference
    frames = [5, 3, 200, 17, 17 + len(dataset) // 2]
    in_memory = BatchLoader(dataset, truth, torch.device("cpu"))
    from_file = BatchLoader(dataset, truth, torch.device("cpu"), memory_bytes=0)
    a, b = in_memory(frames, torch.float64), from_file(frames, torch.float64)
    assert 0 in in_memory.in_memory and not from_file.in_memory
    torch.testing.assert_close(a.positions, b.positions, rtol=0, atol=0)
    torch.testing.assert_close(a.forces, b.forces, rtol=0, atol=0)
    coordinates = dataset._handle()["molecules/ala2/coordinates"]
    assert coordinates.chunks[0] == 65536 // (5 * 3 * 4)  # about 64 kB per chunk, not one frame
