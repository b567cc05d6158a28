"""The DFT example pipeline (scripts/build_ethanol_dft.py) end to end at toy size, with fast xTB labels."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_script

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_frames_to_labels_to_model_to_ase(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the script imports its neighbours
    example = load_script(SCRIPTS / "build_ethanol_dft.py")
    work = tmp_path / "ethanol"
    arguments = ["--work", str(work), "--frames", "10", "--engine", "tblite", "--method", "GFN2-xTB",
                 "--epochs", "2", "--md-ps", "0.02"]  # fmt: skip
    assert example.main(arguments) == 0
    summary = json.loads((work / "summary.json").read_text())
    assert summary["labelling"]["converged"] == 10 and summary["test_frames"] == "8:10"
    assert summary["epochs_run"] == 2 and summary["ase_langevin"]["finite"]
    assert summary["test_label_force_rms_kj_per_mol_nm"] > 0
    # Labelling again finds every frame done: the run resumes, it does not start over.
    assert example.main(arguments) == 0
    assert json.loads((work / "summary.json").read_text())["labelling"]["computed"] == 0
