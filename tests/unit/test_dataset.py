"""The HDF5 dataset format: lossless round trip, lazy reads, clear errors, unit-correct import."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from gnnmd.data.dataset import DatasetError, ForceDataset, write_molecule
from gnnmd.data.importers import CGNET_DIR, cgnet_ala2_topology, import_cgnet_ala2
from gnnmd.units import KJ_PER_KCAL


def frames(system, count=6, seed=0):
    rng = np.random.default_rng(seed)
    x = system.positions_nm[None] + rng.normal(0, 0.01, (count, system.topology.n_beads, 3))
    return x, rng.normal(0, 100, x.shape)


def test_round_trip(tmp_path, chignolin, villin):
    path = tmp_path / "d.h5"
    xc, fc = frames(chignolin)
    xv, fv = frames(villin, count=3)
    write_molecule(path, chignolin.topology, xc, fc, description="test")
    write_molecule(path, villin.topology, xv, fv)
    dataset = ForceDataset(path)
    assert len(dataset) == 9 and dataset.molecules == ["chignolin", "villin"]
    topology = dataset.topologies[0]
    for field in ("bead_types", "bead_names", "residue_names", "chain_ids"):
        assert getattr(topology, field) == getattr(chignolin.topology, field)
    for field in ("masses_amu", "bonds", "angles", "dihedrals", "residue_ids", "atom_indices"):
        np.testing.assert_array_equal(getattr(topology, field), getattr(chignolin.topology, field))
    frame = dataset[7]
    assert frame.molecule == 1
    np.testing.assert_allclose(frame.positions.numpy(), xv[1], rtol=1e-6)
    np.testing.assert_allclose(frame.forces.numpy(), fv[1], rtol=1e-6)
    coordinates, _ = dataset.frames(0, [4, 1])
    np.testing.assert_allclose(coordinates, xc[[1, 4]], rtol=1e-6)


def test_bad_inputs_are_named(tmp_path, chignolin):
    path = tmp_path / "d.h5"
    x, f = frames(chignolin)
    with pytest.raises(DatasetError, match="molecule 'chignolin', field 'forces' has shape"):
        write_molecule(path, chignolin.topology, x, f[:, :10])
    x_nan = x.copy()
    x_nan[2, 3, 1] = np.nan
    with pytest.raises(DatasetError, match="field 'coordinates', frame 2, bead 3: value nan is not finite"):
        write_molecule(path, chignolin.topology, x_nan, f)
    write_molecule(path, chignolin.topology, x, f)
    with pytest.raises(DatasetError, match="already in the dataset"):
        write_molecule(path, chignolin.topology, x, f)
    with pytest.raises(DatasetError, match=r"molecules \['nope'\] not found"):
        ForceDataset(path, molecules=["nope"])
    with pytest.raises(DatasetError, match="no such dataset file"):
        ForceDataset(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        ForceDataset(text)
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.attrs["format"] = "something-else"
    with pytest.raises(DatasetError, match="attribute 'format'"):
        ForceDataset(tmp_path / "other.h5")


def test_cgnet_import_converts_units(tmp_path):
    dataset = ForceDataset(import_cgnet_ala2(tmp_path / "ala2.h5"))
    raw_x = np.load(CGNET_DIR / "cgnet_ala2_coordinates.npy")
    raw_f = np.load(CGNET_DIR / "cgnet_ala2_forces.npy")
    frame = dataset[123]
    np.testing.assert_allclose(frame.positions.numpy(), raw_x[123] / 10.0, rtol=1e-6)
    np.testing.assert_allclose(frame.forces.numpy(), raw_f[123] * KJ_PER_KCAL * 10.0, rtol=1e-6)
    bond = np.linalg.norm(frame.positions[1] - frame.positions[0])
    assert 0.12 < bond < 0.15  # C-N peptide bond, nm
    topology = cgnet_ala2_topology()
    assert len(topology.dihedrals) == 2 and topology.bead_types[2] == "ALA.CA"
