"""Alanine-dipeptide reference data: the backbone mapping with caps, seed-dependent hot starts,
trajectories recorded per frame, held out whole in training and grouped in validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gnnmd.data.allatom import AllAtomSettings, Generator
from gnnmd.data.dataset import DatasetError, ForceDataset, append_frames, write_molecule
from gnnmd.data.importers import import_cgnet_ala2
from gnnmd.protein_mapping import protein_bead_vocabulary
from gnnmd.systems import DroppedAtomsWarning, load_system
from gnnmd.train.loop import TrainingConfig
from gnnmd.train.split import split_frames


def test_backbone_mapping_gives_cgnets_alanine_dipeptide(tmp_path):
    system = load_system("ala2")
    cgnet = ForceDataset(import_cgnet_ala2(tmp_path / "cgnet.h5")).topologies[0]
    assert system.topology.bead_types == cgnet.bead_types == ("ACE.C", "ALA.N", "ALA.CA", "ALA.C", "NME.N")
    assert system.topology.bonds.tolist() == cgnet.bonds.tolist()
    assert system.topology.dihedrals.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]  # φ and ψ
    assert set(system.topology.bead_types) <= set(protein_bead_vocabulary("backbone"))
    assert len(protein_bead_vocabulary("backbone")) == 65  # 21 residues x (N, CA, C) + the caps' C, N
    # Other mappings still leave the caps out, and say so.
    with pytest.warns(DroppedAtomsWarning, match="ACE x1, NME x1.*backbone mapping keeps"):
        load_system(str(system.pdb_path), "5bead")
    chignolin = load_system("chignolin", "backbone").topology
    assert chignolin.n_beads == 30 and len(chignolin.bonds) == 29  # no caps: N, CA, C per residue


@pytest.fixture()
def ala2():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedAtomsWarning)
        return load_system("ala2")


def settings(**changes) -> AllAtomSettings:
    values = dict(platform="Reference", frame_interval_ps=0.01, chunk_frames=2, seed=3)
    values.update(changes)
    return AllAtomSettings(**values)


def test_hot_start_depends_on_the_seed_and_resumes(ala2, tmp_path):
    hot = dict(start_temperature_k=600.0, start_ps=0.2)
    first = Generator(ala2, tmp_path / "a.h5", settings(**hot))
    first.run(2)
    other = Generator(ala2, tmp_path / "b.h5", settings(seed=4, **hot))
    other.run(2)
    cold = Generator(ala2, tmp_path / "c.h5", settings())
    cold.run(2)
    a, b, c = (ForceDataset(tmp_path / f"{n}.h5").frames(0)[0] for n in "abc")
    assert np.abs(a[0] - b[0]).max() > 0.01 and np.abs(a[0] - c[0]).max() > 0.01
    resumed = Generator(ala2, tmp_path / "a.h5", settings(**hot))
    assert resumed.frames_done == 2 and resumed.run(3) == 3  # the hot start runs once
    # Settings without a hot start keep their old fingerprint (older checkpoints resume).
    assert "start_" not in settings().fingerprint() and "start_ps" in settings(**hot).fingerprint()
    bad_starts = [{"start_temperature_k": 600.0}, {"start_ps": 5.0}]
    bad_starts.append({"start_temperature_k": -1.0, "start_ps": 1.0})
    for bad in bad_starts:
        with pytest.raises(ValueError, match="give both, positive, or neither"):
            settings(**bad)


def test_trajectories_are_stored_checked_and_kept_together(ala2, tmp_path):
    rng = np.random.default_rng(0)
    x = ala2.positions_nm[None] + rng.normal(0, 0.005, (12, 5, 3))
    f = rng.normal(0, 100, x.shape)
    ids = np.repeat([0, 1, 2, 3, 4, 5], 2)
    path = tmp_path / "d.h5"
    write_molecule(path, ala2.topology, x, f, trajectories=ids)
    data = ForceDataset(path)
    assert data.trajectory_ids[0].tolist() == ids.tolist()
    with pytest.raises(DatasetError, match="records each frame's trajectory"):
        append_frames(path, ala2.topology, x[:2], f[:2])
    for bad in (ids[:-1], ids - 1, ids.astype(float)):
        with pytest.raises(DatasetError, match="non-negative integers"):
            write_molecule(tmp_path / "bad.h5", ala2.topology, x, f, trajectories=bad)
    train, held = split_frames(12, TrainingConfig(validation_fraction=0.34, seed=1), ids)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(12))
    held_ids = set(ids[held].tolist())
    assert len(held_ids) == 2 and not held_ids & set(ids[train].tolist())  # whole trajectories
    with pytest.raises(ValueError, match="hold out whole ones"):
        split_frames(12, TrainingConfig(max_frames=6), ids)


def test_training_and_validation_follow_the_trajectories(ala2, tmp_path):
    import json

    from gnnmd.cli import main

    rng = np.random.default_rng(1)
    x = ala2.positions_nm[None] + rng.normal(0, 0.01, (160, 5, 3))
    f = rng.normal(0, 100, x.shape)
    ids = np.repeat(np.arange(8), 20)
    data = tmp_path / "ala2.h5"
    write_molecule(data, ala2.topology, x, f, trajectories=ids)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_rbf": 8,
                                  "cutoff_nm": 1.0}))  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "-o", str(run), "--model-config", str(config),
                 "--epochs", "1", "--batch-size", "32"]) == 0  # fmt: skip
    from gnnmd.models import load_model

    training = load_model(str(run / "best.pt")).metadata["training"]
    held = np.array(training["validation_frames"])
    assert training["split"] == "whole trajectories"
    assert len(held) == 20 and len(set(ids[held].tolist())) == 1  # 10% of 8 trajectories: one, whole
    report = tmp_path / "report.json"
    argv = ["validate", str(run / "best.pt"), "--reference", str(data), "--replicas", "4", "--steps", "40"]
    argv += ["--equilibration-steps", "10", "--record-every", "10", "--json", str(report)]
    assert main(argv) == 0
    molecule = json.loads(report.read_text())["molecules"]["ala2"]
    assert molecule["reference_groups"] == "trajectories" and molecule["force_frames"] == "held-out"


def test_biased_trajectories_train_but_are_never_held_out_histogrammed_or_a_reference(ala2, tmp_path):
    """Runs biased along a CG coordinate (metadynamics along φ) give valid mean-force samples but
    not Boltzmann frames: they are always in training, out of the priors' histograms and of
    validation, and a reference holding them is refused."""
    from gnnmd.analysis.validate import ValidationSettings, validate
    from gnnmd.models import load_model
    from gnnmd.train.setup import prior_structures
    from gnnmd.train.split import biased_frames

    rng = np.random.default_rng(2)
    x = ala2.positions_nm[None] + rng.normal(0, 0.005, (16, 5, 3))
    x[12:] += 5.0  # the biased run's frames, told apart by where they are
    f = rng.normal(0, 100, x.shape)
    ids = np.repeat([0, 1, 2, 9], 4)
    path = tmp_path / "mixed.h5"
    write_molecule(path, ala2.topology, x, f, trajectories=ids, biased_trajectories=[9])
    data = ForceDataset(path)
    assert data.biased_trajectories[0].tolist() == [9]
    assert data.biased_frames(0).tolist() == [False] * 12 + [True] * 4
    with pytest.raises(DatasetError, match="not all among"):
        write_molecule(tmp_path / "bad.h5", ala2.topology, x, f, trajectories=ids, biased_trajectories=[7])
    with pytest.raises(DatasetError, match="not all among"):
        write_molecule(tmp_path / "bad2.h5", ala2.topology, x, f, biased_trajectories=[0])
    for seed in range(6):
        train, held = split_frames(
            16, TrainingConfig(validation_fraction=0.34, seed=seed), ids, biased_frames(data)
        )
        assert set(range(12, 16)) <= set(train.tolist()) and len(set(ids[held].tolist())) == 1
    # Without biased frames the split is the one it always was (resumed runs keep their split).
    plain = [split_frames(16, TrainingConfig(seed=3), ids, b) for b in (None, np.zeros(16, bool))]
    assert all(np.array_equal(a, b) for a, b in zip(*plain, strict=True))
    ((_, frames),) = prior_structures(data, 100)
    assert len(frames) == 12 and frames.max() < ala2.positions_nm.max() + 1.0
    with pytest.raises(ValueError, match="biased trajectories \\[9\\].*not Boltzmann"):
        validate(load_model("ala2"), data, ValidationSettings(replicas=2, steps=20, equilibration_steps=10))
