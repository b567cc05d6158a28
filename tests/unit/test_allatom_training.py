"""All-atom models: element-type topologies, the shipped ala2 frames in gnnmd units, prior-free training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnmd.data.ala2_allatom import ala2_allatom_frames, ala2_allatom_topology, import_ala2_allatom
from gnnmd.data.dataset import ForceDataset
from gnnmd.errors import TopologyError
from gnnmd.nn.potential import PotentialConfig
from gnnmd.topology import PLAIN_TYPE_RESIDUE, custom_topology
from gnnmd.train import Trainer, TrainingConfig
from gnnmd.train.setup import model_for_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = PotentialConfig(
    hidden_channels=16, num_filters=16, num_interactions=1, num_rbf=8, cutoff_nm=0.5,
    activation="ssp", exclusion_order=0, use_priors=False,
)  # fmt: skip


def test_custom_topology_takes_plain_element_types():
    topology = custom_topology("water", ["O", "H", "H"], [15.999, 1.008, 1.008], [])
    assert topology.bead_names == ("O", "H", "H")
    assert topology.residue_names == (PLAIN_TYPE_RESIDUE,) * 3
    assert topology.bonds.shape == (0, 2) and topology.excluded_pairs(2).shape == (0, 2)
    mixed = custom_topology("mixed", ["ACE.C", "H"], [12.011, 1.008], [(0, 1)])
    assert mixed.residue_names == ("ACE", PLAIN_TYPE_RESIDUE)
    for bad in ("ACE.", ".C", ""):
        with pytest.raises(TopologyError, match=repr(bad)):
            custom_topology("bad", ["C", bad], [12.0, 12.0], [])


def test_shipped_frames_are_in_nm_and_kj_per_mol_nm():
    positions, forces = ala2_allatom_frames()
    topology = ala2_allatom_topology()
    assert positions.shape == forces.shape == (2000, 22, 3)
    assert topology.bead_types[:2] == ("H", "C") and sorted(set(topology.bead_types)) == ["C", "H", "N", "O"]
    # Methyl C-H bonds were constrained to 0.109 nm (1.09 Å) in the reference MD.
    np.testing.assert_allclose(np.linalg.norm(positions[:, 0] - positions[:, 1], axis=1), 0.109, atol=1e-5)
    rms = np.sqrt(np.mean(forces**2))
    assert 600.0 < rms < 800.0  # kJ/mol/nm: 16.5 kcal/mol/Å in the file


def test_prior_free_model_trains_on_allatom_frames(tmp_path):
    data = import_ala2_allatom(tmp_path / "ala2.h5", slice(0, 40))
    dataset = ForceDataset(data)
    assert len(dataset) == 40 and dataset.topologies[0].bead_types == ala2_allatom_topology().bead_types
    model = model_for_dataset(dataset, TINY, temperature_k=300.0, seed=0)
    assert model.vocabulary == ["C", "H", "N", "O"] and not model.use_priors
    state = torch.random.get_rng_state()
    settings = TrainingConfig(epochs=3, batch_size=8, learning_rate=5e-3, validation_fraction=0.25, seed=0)
    trainer = Trainer(model, dataset, settings, tmp_path / "run", "cpu", {"name": "tiny"})
    before = trainer.validate().force_rmse
    history = trainer.run(resume=False)
    assert len(history) == 3 and trainer.best_val < before
    assert torch.equal(state, torch.random.get_rng_state())
    assert (tmp_path / "run" / "best.pt").is_file()


def test_import_refuses_an_empty_selection(tmp_path):
    with pytest.raises(ValueError, match="selects none of the 2000 shipped frames"):
        import_ala2_allatom(tmp_path / "empty.h5", slice(2000, None))
