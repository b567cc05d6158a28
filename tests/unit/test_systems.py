"""Shipped systems (gnnmd.systems): TOML descriptions, bead counts, loading by name and path."""

from __future__ import annotations

import pathlib
import shutil
import tomllib
import warnings

import mdtraj
import numpy as np
import pytest

import gnnmd.catalog as catalog
from gnnmd.errors import SystemNotFoundError, TopologyError
from gnnmd.protein_mapping import protein_bead_vocabulary
from gnnmd.systems import DEFAULT_SYSTEM, System, list_systems, load_system, systems_dir

# name: (5-bead count, CA count = residues)
EXPECTED = {
    "chignolin": (49, 10),
    "chignolin_1uao": (47, 10),
    "engrailed": (269, 54),
    "villin": (173, 35),
    "bba": (138, 28),
    "ntl9": (190, 39),
    "protein_g": (301, 61),
}
KEYS = ("name", "title", "pdb", "pdb_id", "mapping", "expected_beads", "description", "source")


def _spec(name: str) -> dict:
    with (systems_dir() / f"{name}.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_shipped_systems_listed() -> None:
    names = list_systems()
    assert names == sorted(names)
    assert set(EXPECTED) <= set(names)
    assert DEFAULT_SYSTEM == "chignolin" and DEFAULT_SYSTEM in names
    assert systems_dir().is_dir()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_toml_description(name: str) -> None:
    spec = _spec(name)
    for key in KEYS:
        assert key in spec, key
    assert spec["name"] == name and spec["mapping"] == "5bead"
    assert spec["expected_beads"] == EXPECTED[name][0]
    assert (systems_dir() / spec["pdb"]).is_file()
    assert "@" in spec["source"] and ":" in spec["source"]
    provenance = (systems_dir() / "PROVENANCE.md").read_text()
    assert spec["pdb"] in provenance and spec["pdb_id"] in provenance


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_shipped(name: str) -> None:
    system = load_system(name)
    assert isinstance(system, System) and system.name == name
    cg = system.topology
    assert cg.n_beads == EXPECTED[name][0] and cg.mapping == "5bead"
    assert system.positions_nm.shape == (cg.n_beads, 3)
    assert system.positions_nm.dtype == np.float64
    assert set(cg.bead_types) <= set(protein_bead_vocabulary("5bead"))
    assert system.description and system.pdb_path.is_file()
    assert str(system.pdb_path) == cg.source
    # Units are nm: consecutive CA-CA distances are about 0.38 nm (0.29 for a cis peptide).
    ca = system.positions_nm[np.array(cg.bead_names) == "CA"]
    steps = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    assert 0.36 < np.median(steps) < 0.40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_shipped_ca(name: str) -> None:
    system = load_system(name, mapping="ca")
    assert system.topology.n_beads == EXPECTED[name][1] and system.topology.mapping == "ca"
    assert system.positions_nm.shape == (EXPECTED[name][1], 3)


def test_villin_keeps_norleucines() -> None:
    cg = load_system("villin").topology
    is_nle = np.array(cg.residue_names) == "NLE"
    assert sorted(set(cg.residue_ids[is_nle].tolist())) == [65, 70]
    assert "NLE.CB" in cg.bead_types


def test_ntl9_is_chain_a_residues_1_to_39() -> None:
    cg = load_system("ntl9").topology
    assert set(cg.chain_ids) == {"A"}
    assert cg.residue_ids.min() == 1 and cg.residue_ids.max() == 39
    assert len(set(cg.residue_ids.tolist())) == 39
    assert len(cg.bonds) == cg.n_beads - 1  # one connected chain, no break


def test_bba_uses_model_1() -> None:
    system = load_system("bba")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traj = mdtraj.load_pdb(str(system.pdb_path))
    assert traj.n_frames == 1  # the shipped file keeps MODEL 1 only
    np.testing.assert_array_equal(system.positions_nm, traj.xyz[0, system.topology.atom_indices])


def test_aliases_and_pdb_ids() -> None:
    assert load_system("1ENH").name == "engrailed"
    assert load_system("CLN025").name == "chignolin"
    assert load_system("Villin").name == "villin"


def test_load_by_name_and_by_path_agree() -> None:
    by_name = load_system("chignolin")
    by_path = load_system(by_name.pdb_path)
    by_str = load_system(str(by_name.pdb_path))
    for other in (by_path, by_str):
        assert other.topology.bead_types == by_name.topology.bead_types
        assert other.topology.bead_names == by_name.topology.bead_names
        np.testing.assert_array_equal(other.topology.bonds, by_name.topology.bonds)
        np.testing.assert_array_equal(other.topology.dihedrals, by_name.topology.dihedrals)
        np.testing.assert_array_equal(other.positions_nm, by_name.positions_nm)
    assert by_path.name == "chignolin_cln025_5awl"
    assert load_system(by_name.pdb_path, mapping="ca").topology.n_beads == 10


def test_load_by_path_takes_all_chains() -> None:
    assert load_system(systems_dir() / "ntl9_2hba.pdb").topology.n_beads == 2 * 255


def test_load_by_path_uses_first_model(tmp_path: pathlib.Path) -> None:
    native = load_system("chignolin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traj = mdtraj.load_pdb(str(native.pdb_path)).atom_slice(native.topology.atom_indices)
    moved = traj.xyz + np.array([0.5, 0.0, 0.0], dtype=np.float32)
    path = tmp_path / "two_models.pdb"
    mdtraj.Trajectory(np.concatenate([traj.xyz, moved]), traj.topology).save_pdb(str(path))
    system = load_system(path)
    assert system.topology.n_beads == 49
    np.testing.assert_allclose(system.positions_nm, native.positions_nm, atol=1e-3)


def test_unknown_name_raises() -> None:
    with pytest.raises(SystemNotFoundError) as info:
        load_system("no_such_protein")
    assert "no_such_protein" in str(info.value) and "chignolin" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(SystemNotFoundError):
        load_system(pathlib.Path("/nonexistent/dir/x.pdb"))


@pytest.mark.parametrize(
    "content",
    ["", "hello, this is not a PDB file\n", "ATOM      1  N   TYR A   1      25.8xx  21.671\n"],
)
def test_malformed_pdb_raises(tmp_path: pathlib.Path, content: str) -> None:
    path = tmp_path / "broken.pdb"
    path.write_text(content)
    with pytest.raises(TopologyError, match="broken.pdb"):
        load_system(path)


def test_binary_file_raises(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "binary.pdb"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(TopologyError, match="binary.pdb"):
        load_system(path)


def test_invalid_mapping_raises() -> None:
    with pytest.raises(ValueError, match="unknown CG mapping"):
        load_system("chignolin", mapping="martini")


def _copy_system(tmp_path: pathlib.Path, name: str, replace: tuple[str, str]) -> pathlib.Path:
    spec = _spec(name)
    text = (systems_dir() / f"{name}.toml").read_text()
    assert replace[0] in text
    (tmp_path / f"{name}.toml").write_text(text.replace(*replace))
    shutil.copy(systems_dir() / spec["pdb"], tmp_path / spec["pdb"])
    return tmp_path


def test_expected_beads_mismatch_raises(tmp_path: pathlib.Path, monkeypatch) -> None:
    folder = _copy_system(tmp_path, "chignolin", ("expected_beads = 49", "expected_beads = 50"))
    monkeypatch.setattr(catalog, "systems_dir", lambda: folder)
    assert list_systems() == ["chignolin"]
    with pytest.raises(TopologyError, match="49 beads.*50"):
        load_system("chignolin")
    load_system("chignolin", mapping="ca")  # the bead check is for the TOML's own mapping


def test_toml_path_loads(tmp_path: pathlib.Path) -> None:
    folder = _copy_system(tmp_path, "ntl9", ("residues = [1, 39]", "residues = [1, 52]"))
    with pytest.raises(TopologyError, match="expected_beads"):
        load_system(folder / "ntl9.toml")
    assert load_system(systems_dir() / "ntl9.toml").topology.n_beads == 190


def test_what_a_structure_file_leaves_out_is_said(tmp_path):
    """Waters and extra NMR models of a user's file are reported once; a shipped system says nothing."""
    import warnings

    from gnnmd.systems import DroppedAtomsWarning, load_system

    source = load_system("chignolin").pdb_path
    with pytest.warns(DroppedAtomsWarning, match=r"left out 12 non-protein residue\(s\) \(HOH x12\)"):
        load_system(source)
    lines = [line for line in source.read_text().splitlines() if line.startswith(("ATOM", "TER"))]
    two_models = ["MODEL        1", *lines, "ENDMDL", "MODEL        2", *lines, "ENDMDL", "END"]
    (tmp_path / "nmr.pdb").write_text("\n".join(two_models) + "\n")
    with pytest.warns(DroppedAtomsWarning, match=r"nmr.pdb: left out models 2-2: the first model is used"):
        load_system(tmp_path / "nmr.pdb")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedAtomsWarning)
        load_system("chignolin")  # shipped: its description says what the mapping keeps
