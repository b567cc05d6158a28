"""One folder of shipped files, found through importlib.resources, and nothing shipped outside it."""

from __future__ import annotations

import pathlib
import zipfile

import pytest

from gnnmd import assets, catalog
from gnnmd.data.ala2_allatom import ALA2_ALLATOM_DIR
from gnnmd.data.importers import CGNET_DIR

PACKAGE = pathlib.Path(assets.__file__).resolve().parent


def test_every_kind_of_shipped_file_is_under_one_folder():
    root = (PACKAGE / assets.SHIPPED).resolve()
    folders = [assets.systems_dir(), assets.models_dir(), catalog.PRETRAINED_DIR, CGNET_DIR, ALA2_ALLATOM_DIR]
    for folder in folders:
        assert folder.is_dir() and folder.resolve().is_relative_to(root), folder
    assert catalog.list_systems() and catalog.list_models()
    assert all((assets.systems_dir() / f"{name}.toml").is_file() for name in catalog.list_systems())
    # The old homes are gone: one convention, not three.
    assert not (PACKAGE / "pretrained").exists() and not (PACKAGE / "reference_data").exists()
    assert not (PACKAGE.parent / "systems").exists()


def test_a_zipped_installation_is_refused_with_a_clear_error(monkeypatch, tmp_path):
    archive = tmp_path / "gnnmd.zip"
    with zipfile.ZipFile(archive, "w") as file:
        file.writestr("gnnmd/shipped/systems/x.toml", "")
    monkeypatch.setattr(assets.resources, "files", lambda package: zipfile.Path(archive, "gnnmd/"))
    with pytest.raises(RuntimeError, match="inside an archive"):
        assets.systems_dir()
