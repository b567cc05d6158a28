"""`gnnmd data`, `gnnmd train` and `gnnmd validate` end to end on the shipped CGnet data (tiny settings)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gnnmd.cli import main
from gnnmd.models import load_model


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
                   "--epochs", "2", "--batch-size", "64", "--max-frames", "600",
                   "--torsion-weight", "10"])  # fmt: skip
    assert status == 0
    assert "best validation force RMSE" in capsys.readouterr().out
    training = load_model(run / "best.pt").metadata["training"]
    assert training["config"]["torsion_weight"] == 10.0 and training["val_torsion_rmse_kj_per_mol_rad"] > 0
    report_path = tmp_path / "validation.json"
    status = main(["validate", str(run / "best.pt"), "--reference", str(ala2_data), "--replicas", "16",
                   "--steps", "420", "--equilibration-steps", "20", "--record-every", "10",
                   "--json", str(report_path), "--plots", str(tmp_path / "plots")])  # fmt: skip
    assert status == 0
    report = json.loads(report_path.read_text())
    molecule = report["molecules"]["ala2"]
    assert report["trained"] is True and molecule["force_frames"] == "held-out"
    assert molecule["force_frame_count"] == 60  # 10% of 600 frames
    assert molecule["simulated_frames"] == 16 * 40
    # Bounds that can fail. The replicas start from reference frames and move for 0.8 ps, so their
    # φ/ψ sample is reference-like: its divergence lies above the floor of independent reference
    # subsets of that size (the replicas' frames are correlated) and far below that of a sample
    # that ignores the reference (uniform φ/ψ). Measured: model 0.105, floor 0.041, uniform 0.484.
    floor, uniform = phi_psi_controls(ala2_data, molecule["simulated_frames"], report["settings"])
    js = molecule["js_divergence"]["phi_psi"]
    assert floor < js < 0.5 * uniform, (js, floor, uniform)
    assert molecule["force_rmse_kj_per_mol_nm"] > 0
    assert (tmp_path / "plots" / "ala2_validation.png").is_file()
    # What the main observable is judged by: noise floor, populations with errors, priors alone.
    assert molecule["main_observable"] == "phi_psi"
    assert 0 < molecule["noise_floor"] < 0.1  # CGnet halves (10,000 frames) against each other
    for source in (molecule["populations"]["model"], molecule["populations"]["reference"],
                   molecule["priors_only"]["populations"]):  # fmt: skip
        assert set(source) == {"alpha_R", "beta", "alpha_L"}
        assert abs(sum(state["population"] for state in source.values()) - 1.0) < 1e-9
        assert all(state["error"] > 0 for state in source.values() if 0 < state["population"] < 1)
    assert 0 < molecule["priors_only"]["js_divergence"]["phi_psi"] < 0.5 * uniform
    gain = molecule["priors_only"]["force_gain"]
    assert gain["force_rmse_priors_only_kj_per_mol_nm"] > 0 and gain["mse_gain_standard_error"] > 0
    expected = gain["force_rmse_priors_only_kj_per_mol_nm"] ** 2 - molecule["force_rmse_kj_per_mol_nm"] ** 2
    assert abs(gain["mse_gain"] - expected) <= 1e-6 * abs(expected) + 1e-9
    torsion = molecule["priors_only"]["torsion_gain"]  # φ and ψ: generalized forces, kJ/mol/rad
    alone = torsion["torsion_rmse_priors_only_kj_per_mol_rad"]
    trained = molecule["torsion_rmse_kj_per_mol_rad"]
    assert trained > 0 and alone > 0
    assert abs(torsion["mse_gain"] - (alone**2 - trained**2)) <= 1e-6 * alone**2
    printed = capsys.readouterr().out
    assert "torsional forces: RMSE" in printed
    assert "phi_psi: JS model" in printed and "priors only" in printed and "noise floor" in printed


def phi_psi_controls(path, size: int, settings: dict) -> tuple[float, float]:
    """JS (nats) to the reference φ/ψ of: the largest of 5 reference subsets of ``size`` frames
    (the sampling noise floor), and ``size`` uniform samples (a sample that ignores the reference)."""
    from gnnmd.analysis.distributions import histogram, jensen_shannon
    from gnnmd.analysis.observables import term_observables
    from gnnmd.analysis.validate import MAX_REFERENCE_FRAMES
    from gnnmd.data.dataset import ForceDataset

    dataset = ForceDataset(path)
    count = len(dataset)
    chosen = np.linspace(0, count - 1, min(count, MAX_REFERENCE_FRAMES)).astype(np.int64)
    frames, _ = dataset.frames(0, chosen)
    angles = next(o for o in term_observables(dataset.topologies[0], frames) if o.name == "phi_psi").samples
    bins, value_range = settings["bins_2d"], [(-math.pi, math.pi)] * 2
    reference = histogram(angles, bins, value_range)
    rng = np.random.default_rng(0)
    floor = max(
        jensen_shannon(histogram(angles[rng.choice(len(angles), size, replace=False)], bins, value_range),
                       reference)
        for _ in range(5)
    )  # fmt: skip
    uniform = histogram(rng.uniform(-math.pi, math.pi, (size, 2)), bins, value_range)
    return floor, jensen_shannon(uniform, reference)


def test_validate_needs_a_reference(capsys):
    assert main(["validate", "default", "--steps", "30", "--equilibration-steps", "10"]) == 2
    assert "names no default reference data" in capsys.readouterr().err


def test_train_rejects_unknown_model_config(ala2_data, tmp_path, capsys):
    assert main(["train", "--data", str(ala2_data), "-o", str(tmp_path), "--model-config", "huge"]) == 2
    assert "--model-config 'huge'" in capsys.readouterr().err


def test_train_with_refined_dihedral_priors(ala2_data, tmp_path, capsys):
    """--refine-dihedral-priors: refined before the first epoch, recorded in best.pt, kept by a resume
    (the state holds the priors); a resume with other refinement settings is refused."""
    import torch

    from gnnmd.models import load_model
    from gnnmd.safe_load import load_tensors

    run = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_rbf": 8,
                                  "cutoff_nm": 1.0}))  # fmt: skip
    argv = ["train", "--data", str(ala2_data), "-o", str(run), "--model-config", str(config), "--epochs", "1",
            "--batch-size", "64", "--max-frames", "600", "--refine-dihedral-priors", "1",
            "--refine-replicas", "8", "--refine-steps", "60"]  # fmt: skip
    assert main(argv) == 0
    model = load_model(str(run / "best.pt"))
    record = model.metadata["prior_refinement"]
    assert record["settings"]["iterations"] == 1 and len(record["dihedral_js_before_each_iteration"]) == 1
    unrefined = main(["train", "--data", str(ala2_data), "-o", str(tmp_path / "plain"), "--model-config",
                      str(config), "--epochs", "1", "--batch-size", "64", "--max-frames", "600"])  # fmt: skip
    assert unrefined == 0
    plain = load_model(str(tmp_path / "plain" / "best.pt"))
    assert not torch.equal(plain.priors.dihedrals.cos_coefficients, model.priors.dihedrals.cos_coefficients)
    torch.testing.assert_close(plain.priors.bonds.k, model.priors.bonds.k)
    capsys.readouterr()
    assert main([*argv[:8], "2", *argv[9:]]) == 0  # more epochs: the run resumes with its priors
    state = load_tensors(run / "train_state.pt", "training state", "cpu")
    assert state["epoch"] == 2 and state["prior_refinement"] == record
    refined = model.priors.dihedrals.cos_coefficients
    torch.testing.assert_close(state["priors"]["dihedrals"]["cos_coefficients"].to(refined.dtype), refined)
    assert main([*argv[:-5], "2", *argv[-4:]]) != 0  # two iterations now: refused
    assert "prior_refinement" in capsys.readouterr().err
