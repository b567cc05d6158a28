"""Force matching: learns a learnable target, resumes exactly, and splits work across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.models import load_model
from gnnmd.nn.potential import CGPotential
from gnnmd.train import Trainer, TrainingConfig
from tests.conftest import SMALL_CONFIG, randomized

HERE = Path(__file__).parent


def teacher_dataset(path, chignolin, frames=32, energy_offset=None):
    """Frames near the native structure labelled by a random 'teacher' model: an exactly learnable target.

    With ``energy_offset`` (kJ/mol) the frames also carry the teacher's energies plus that offset.
    """
    from gnnmd.models import untrained_model

    teacher = randomized(
        untrained_model(SMALL_CONFIG, [(chignolin.topology, chignolin.positions_nm)], seed=11)
    )
    teacher = teacher.double()
    rng = np.random.default_rng(0)
    x = chignolin.positions_nm[None] + rng.normal(0, 0.02, (frames, chignolin.topology.n_beads, 3))
    batch = teacher.pack([chignolin.topology] * frames)
    energies, forces = teacher.energy_and_forces(torch.tensor(x.reshape(-1, 3)), batch)
    energies = None if energy_offset is None else energies.numpy() + energy_offset
    write_molecule(path, chignolin.topology, x, forces.reshape(frames, -1, 3).numpy(), energies)
    return ForceDataset(path), teacher


def student(teacher: CGPotential, seed: int) -> CGPotential:
    """Same priors as the teacher, a fresh network."""
    torch.manual_seed(seed)
    return CGPotential(teacher.config, teacher.vocabulary, teacher.priors).double()


CONFIG = TrainingConfig(epochs=3, batch_size=8, learning_rate=3e-3, validation_fraction=0.25, seed=1)


def test_training_lowers_validation_loss_and_writes_outputs(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    trainer = Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "run")
    before = trainer.validate().force_rmse
    history = trainer.run()
    assert history[-1]["val_force_rmse"] < 0.8 * before
    for name in ("train_state.pt", "best.pt", "metrics.csv", "learning_curve.png"):
        assert (tmp_path / "run" / name).is_file(), name
    best = load_model(tmp_path / "run" / "best.pt")
    assert best.metadata["trained"] is True
    assert best.metadata["training"]["val_force_rmse_kj_per_mol_nm"] == min(
        r["val_force_rmse"] for r in history
    )
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == len(history) + 1


def test_resume_equals_uninterrupted_run(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    whole = Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "whole")
    whole.run()
    first = Trainer(
        student(teacher, 5), dataset, TrainingConfig(**{**CONFIG.__dict__, "epochs": 2}), tmp_path / "part"
    )
    first.run()
    # A new trainer (as in a new process) with a different initial network picks up the state file.
    resumed = Trainer(student(teacher, 99), dataset, CONFIG, tmp_path / "part")
    resumed.run()

    def timeless(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert len(resumed.history) == CONFIG.epochs
    assert timeless(resumed.history) == timeless(whole.history)
    for a, b in zip(whole.model.network.parameters(), resumed.model.network.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_a_different_config(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    Trainer(
        student(teacher, 5), dataset, TrainingConfig(**{**CONFIG.__dict__, "epochs": 1}), tmp_path / "r"
    ).run()
    with pytest.raises(ValueError, match="use a new output folder"):
        Trainer(
            student(teacher, 5), dataset, TrainingConfig(**{**CONFIG.__dict__, "seed": 2}), tmp_path / "r"
        ).run()


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainingConfig.from_dict({"epochs": 3, "lr": 0.1})


def test_two_process_gradients_equal_one_process(tmp_path, chignolin):
    """One optimiser step's gradients: 2 gloo ranks (DDP) on halves == 1 process on the whole batch.

    The data carry energies, so the step's loss has the force, energy and torsional terms.
    """
    teacher_dataset(tmp_path / "d.h5", chignolin, energy_offset=1234.5)
    script = HERE / "ddp_gradients.py"
    single = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "d.h5"), str(tmp_path / "one.pt")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
         str(script), str(tmp_path / "d.h5"), str(tmp_path / "two.pt")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys() and len(one) > 5
    for name in one:
        assert one[name].abs().sum() > 0, name
        torch.testing.assert_close(two[name], one[name], rtol=1e-9, atol=1e-12)


def test_trainer_starts_no_process_group_and_refuses_an_unjoined_torchrun(chignolin, tmp_path, monkeypatch):
    import torch.distributed as dist

    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "alone")
    assert not dist.is_initialized()  # building a Trainer starts nothing
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="gnnmd.distributed.initialize"):
        Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "unjoined")
