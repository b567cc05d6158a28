"""`gnnmd data`, `gnnmd train` and `gnnmd validate` end to end on the shipped CGnet data (tiny settings)."""

from __future__ import annotations

import json

import pytest

from gnnmd.cli import main


@pytest.fixture(scope="module")
def ala2_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ala2.h5"
    assert main(["data", "import-cgnet", "-o", str(path)]) == 0
    return path


def test_train_then_validate(ala2_data, tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_rbf": 8,
                                  "cutoff_nm": 1.0}))  # fmt: skip
    status = main(["train", "--data", str(ala2_data), "-o", str(run), "--model-config", str(config),
                   "--epochs", "2", "--batch-size", "64", "--max-frames", "600"])  # fmt: skip
    assert status == 0
    assert "best validation force RMSE" in capsys.readouterr().out
    report_path = tmp_path / "validation.json"
    status = main(["validate", str(run / "best.pt"), "--reference", str(ala2_data), "--replicas", "4",
                   "--steps", "120", "--equilibration-steps", "20", "--json", str(report_path),
                   "--plots", str(tmp_path / "plots")])  # fmt: skip
    assert status == 0
    report = json.loads(report_path.read_text())
    molecule = report["molecules"]["ala2"]
    assert report["trained"] is True and molecule["force_frames"] == "held-out"
    assert molecule["force_frame_count"] == 60  # 10% of 600 frames
    assert 0.0 <= molecule["js_divergence"]["phi_psi"] <= 0.7
    assert molecule["force_rmse_kj_per_mol_nm"] > 0
    assert (tmp_path / "plots" / "ala2_validation.png").is_file()


def test_validate_needs_a_reference(capsys):
    assert main(["validate", "default", "--steps", "30", "--equilibration-steps", "10"]) == 2
    assert "names no default reference data" in capsys.readouterr().err


def test_train_rejects_unknown_model_config(ala2_data, tmp_path, capsys):
    assert main(["train", "--data", str(ala2_data), "-o", str(tmp_path), "--model-config", "huge"]) == 2
    assert "--model-config 'huge'" in capsys.readouterr().err
