"""One checkpoint format: bit-exact round trips and clear errors for bad files."""

from __future__ import annotations

import pytest
import torch

from gnnmd.errors import CheckpointError, ModelNotFoundError
from gnnmd.models import FORMAT_VERSION, list_models, load_model, model_path, read_checkpoint, save_checkpoint
from tests.conftest import perturbed


def test_round_trip_is_bit_exact(small_model, chignolin, tmp_path):
    model = small_model.float()
    path = save_checkpoint(model, tmp_path / "m.pt", {"trained": False, "description": "test"})
    loaded = load_model(path)
    x = perturbed(chignolin.positions_nm).float()
    batch = model.pack([chignolin.topology])
    energy, forces = model.energy_and_forces(x, batch)
    loaded_energy, loaded_forces = loaded.energy_and_forces(x, batch)
    assert torch.equal(energy, loaded_energy) and torch.equal(forces, loaded_forces)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.metadata["description"] == "test" and loaded.vocabulary == model.vocabulary


def test_shipped_models_by_name():
    assert {"default", "cgschnet-benchmark"} <= set(list_models())
    model = load_model("default")
    assert model.metadata["trained"] is False
    assert model_path("default").name == "default.pt"


def test_missing_model_lists_shipped_names(tmp_path):
    with pytest.raises(ModelNotFoundError, match="default"):
        load_model("no-such-model")
    with pytest.raises(ModelNotFoundError, match="nothere.pt"):
        load_model(tmp_path / "nothere.pt")


def test_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: not a readable gnnmd checkpoint"):
        load_model(path)


def test_truncated_file_is_rejected(tmp_path):
    whole = model_path("default").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_model(path)


def rewrite(tmp_path, **changes):
    checkpoint = read_checkpoint(model_path("default"))
    checkpoint.update(changes)
    path = tmp_path / "edited.pt"
    torch.save(checkpoint, path)
    return path


def test_newer_format_version_is_rejected(tmp_path):
    path = rewrite(tmp_path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer gnnmd"):
        load_model(path)


def test_foreign_dict_names_the_field(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="field 'format'"):
        load_model(path)


def test_missing_field_and_wrong_units_are_named(tmp_path):
    checkpoint = read_checkpoint(model_path("default"))
    del checkpoint["vocabulary"]
    path = tmp_path / "partial.pt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="vocabulary"):
        load_model(path)
    with pytest.raises(CheckpointError, match="units"):
        load_model(rewrite(tmp_path, units={"length": "angstrom", "energy": "kcal/mol"}))


def test_inconsistent_weights_are_reported(tmp_path):
    checkpoint = read_checkpoint(model_path("default"))
    checkpoint["config"] = dict(checkpoint["config"], hidden_channels=32)
    path = tmp_path / "inconsistent.pt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="inconsistent checkpoint"):
        load_model(path)


def test_exported_torchscript_is_not_a_checkpoint(chignolin, tmp_path):
    from gnnmd.export import save_exported

    path = save_exported(load_model("default"), chignolin.topology, tmp_path / "exported.pt")
    with pytest.raises(CheckpointError, match="exported TorchScript module"):
        load_model(path)


def test_metadata_must_state_training(small_model, tmp_path):
    with pytest.raises(ValueError, match="trained"):
        save_checkpoint(small_model, tmp_path / "m.pt", {"description": "?"})


def test_untrained_models_warn_once_wherever_they_are_loaded(monkeypatch, chignolin):
    """load_model, create_simulation and openmm-ml's MLPotential all say so, once per model file."""
    import warnings

    from gnnmd import models
    from gnnmd.openmm import create_simulation

    monkeypatch.setattr(models, "_UNTRAINED_WARNED", set())
    with pytest.warns(models.UntrainedModelWarning, match=r"'default' .* is UNTRAINED"):
        models.load_model("default")
    with warnings.catch_warnings():
        warnings.simplefilter("error", models.UntrainedModelWarning)
        models.load_model("default")  # said once
        models.load_model("chignolin")  # trained: nothing to say
    monkeypatch.setattr(models, "_UNTRAINED_WARNED", set())
    with pytest.warns(models.UntrainedModelWarning):
        create_simulation(chignolin, "default", platform="Reference")
    monkeypatch.setattr(models, "_UNTRAINED_WARNED", set())
    with pytest.warns(models.UntrainedModelWarning):
        from openmmml import MLPotential

        MLPotential("gnnmd", model="default")
