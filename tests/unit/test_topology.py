"""CG mapping (gnnmd.topology): bead counts, types, masses, bonded graph, errors.

Structures come from the shipped systems folder (``gnnmd/shipped/systems``); edited copies go to tmp_path.
"""

from __future__ import annotations

import pathlib
import warnings
from collections import deque

import mdtraj
import numpy as np
import pytest

from gnnmd.errors import TopologyError
from gnnmd.protein_mapping import (
    BEAD_NAMES,
    RESIDUE_ALIASES,
    STANDARD_RESIDUES,
    map_to_cg,
    protein_bead_vocabulary,
)
from gnnmd.systems import systems_dir
from gnnmd.topology import MAPPINGS, CGTopology

CLN025 = "chignolin_cln025_5awl.pdb"  # YYDPETGTWY, one Gly (residue 7), 12 waters


def _pdb(name: str) -> pathlib.Path:
    return systems_dir() / name


def _load(path: pathlib.Path) -> mdtraj.Trajectory:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mdtraj.load_pdb(str(path))


def _atom_lines(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines()


def _is_atom(line: str) -> bool:
    return line.startswith(("ATOM", "HETATM"))


def _resseq(line: str) -> int:
    return int(line[22:26])


def _write(tmp_path: pathlib.Path, name: str, lines: list[str]) -> pathlib.Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cln025() -> tuple[mdtraj.Trajectory, CGTopology, np.ndarray]:
    traj = _load(_pdb(CLN025))
    cg, xyz = map_to_cg(traj, "5bead", name="chignolin", source=CLN025)
    return traj, cg, xyz


# ----------------------------------------------------------------------------- vocabulary


def test_standard_residues_and_aliases() -> None:
    assert len(STANDARD_RESIDUES) == 21 and "NLE" in STANDARD_RESIDUES
    assert len(set(STANDARD_RESIDUES)) == 21
    assert set(RESIDUE_ALIASES.values()) <= set(STANDARD_RESIDUES)
    for alias in ("HID", "HIE", "HIP", "HSD", "HSE", "HSP"):
        assert RESIDUE_ALIASES[alias] == "HIS"
    assert RESIDUE_ALIASES["CYX"] == RESIDUE_ALIASES["CYM"] == "CYS"
    assert (RESIDUE_ALIASES["ASH"], RESIDUE_ALIASES["GLH"], RESIDUE_ALIASES["LYN"]) == (
        "ASP",
        "GLU",
        "LYS",
    )


def test_protein_bead_vocabulary() -> None:
    five = protein_bead_vocabulary("5bead")
    assert len(five) == 21 * 5 - 1  # glycine has no CB
    assert "GLY.CB" not in five and "TYR.CA" in five and "NLE.CB" in five
    assert len(set(five)) == len(five)
    assert five[:5] == ("ALA.N", "ALA.CA", "ALA.CB", "ALA.C", "ALA.O")
    order = BEAD_NAMES["5bead"]
    keys = [(t.split(".")[0], order.index(t.split(".")[1])) for t in five]
    assert keys == sorted(keys)
    assert protein_bead_vocabulary("5bead") == five  # deterministic
    ca = protein_bead_vocabulary("ca")
    assert ca == tuple(f"{r}.CA" for r in sorted(STANDARD_RESIDUES))
    assert protein_bead_vocabulary() == five
    with pytest.raises(ValueError, match="unknown CG mapping"):
        protein_bead_vocabulary("martini")
    assert MAPPINGS == ("5bead", "ca", "backbone")


# ----------------------------------------------------------------------------- CLN025


def test_cln025_beads(cln025) -> None:
    traj, cg, xyz = cln025
    assert cg.n_beads == 49 == 9 * 5 + 4
    assert cg.name == "chignolin" and cg.mapping == "5bead" and cg.source == CLN025
    assert cg.bead_names[:5] == ("N", "CA", "CB", "C", "O")
    gly = [i for i, r in enumerate(cg.residue_names) if r == "GLY"]
    assert [cg.bead_names[i] for i in gly] == ["N", "CA", "C", "O"]
    assert set(cg.residue_ids[gly].tolist()) == {7}
    assert sorted(set(cg.residue_ids.tolist())) == list(range(1, 11))
    assert "HOH" not in cg.residue_names and set(cg.chain_ids) == {"A"}
    assert cg.bead_types[1] == "TYR.CA" and "TRP.CB" in cg.bead_types
    assert set(cg.bead_types) <= set(protein_bead_vocabulary("5bead"))
    expected = [f"{r}.{b}" for r, b in zip(cg.residue_names, cg.bead_names, strict=True)]
    assert list(cg.bead_types) == expected


def test_cln025_positions_are_atom_positions_in_nm(cln025) -> None:
    traj, cg, xyz = cln025
    assert xyz.shape == (1, 49, 3) and xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz[0], traj.xyz[0, cg.atom_indices])
    atoms = list(traj.topology.atoms)
    assert [atoms[i].name for i in cg.atom_indices] == list(cg.bead_names)
    # First atom of the file: N of TYR 1 at (25.824, 21.671, 10.238) Angstrom.
    np.testing.assert_allclose(xyz[0, 0], [2.5824, 2.1671, 1.0238], atol=1e-6)


def test_cln025_masses(cln025) -> None:
    _, cg, _ = cln025
    assert cg.masses_amu.dtype == np.float64 and np.all(cg.masses_amu > 0)
    expected = {"N": 14.007, "CA": 12.011, "CB": 12.011, "C": 12.011, "O": 15.999}
    for name, got in zip(cg.bead_names[:5], cg.masses_amu[:5], strict=True):
        assert got == pytest.approx(expected[name], abs=2e-3), name
    assert cg.masses_amu.sum() == pytest.approx(10 * 14.007 + 29 * 12.011 + 10 * 15.999, abs=0.05)


def test_cln025_bonded_counts_by_hand(cln025) -> None:
    _, cg, _ = cln025
    # Bonds: 9 residues x 4 (N-CA, CA-C, C-O, CA-CB) + Gly 3 + 9 peptide bonds.
    assert len(cg.bonds) == 9 * 4 + 3 + 9 == 48
    # Angles = sum over beads of C(degree, 2). Degrees: N 1 (first) or 2; CA 3 (Gly 2);
    # C 3 (last residue 2); CB and O 1.  N: 9 x 1; CA: 9 x 3 + 1; C: 9 x 3 + 1.
    assert len(cg.angles) == 9 + 28 + 28 == 65
    # Dihedrals = sum over bonds j-k of (deg j - 1)(deg k - 1):
    # N-CA: 0 (first) + 8 x 2 + 1 (Gly) = 17; CA-C: 8 x 4 + Gly 2 + last 2 = 36;
    # C-N: 9 x 2 = 18; C-O and CA-CB: 0.
    assert len(cg.dihedrals) == 17 + 36 + 18 == 71


def test_ca_mapping_cln025() -> None:
    traj = _load(_pdb(CLN025))
    cg, xyz = map_to_cg(traj, "ca")
    assert cg.n_beads == 10 and xyz.shape == (1, 10, 3)
    assert cg.bead_names == ("CA",) * 10
    assert cg.bead_types[0] == "TYR.CA" and cg.bead_types[6] == "GLY.CA"
    assert (len(cg.bonds), len(cg.angles), len(cg.dihedrals)) == (9, 8, 7)
    np.testing.assert_array_equal(cg.bonds, np.stack([np.arange(9), np.arange(1, 10)], axis=1))
    assert cg.source == "<memory>" and cg.name == "molecule"


def _bonded_consistent(cg: CGTopology) -> None:
    bonds = {tuple(b) for b in cg.bonds.tolist()}
    for key, width in (("bonds", 2), ("angles", 3), ("dihedrals", 4)):
        index = getattr(cg, key)
        assert index.dtype == np.int64 and index.shape[1] == width
        assert len({tuple(r) for r in index.tolist()}) == len(index), f"duplicate {key}"
        assert index.tolist() == sorted(index.tolist()), f"{key} not sorted"
    assert np.all(cg.bonds[:, 0] < cg.bonds[:, 1])
    for i, j, k in cg.angles.tolist():
        assert i < k and len({i, j, k}) == 3
        assert tuple(sorted((i, j))) in bonds and tuple(sorted((j, k))) in bonds
    for i, j, k, m in cg.dihedrals.tolist():
        assert (i, j) < (m, k) and len({i, j, k, m}) == 4
        for a, b in ((i, j), (j, k), (k, m)):
            assert tuple(sorted((a, b))) in bonds


@pytest.mark.parametrize(
    "pdb", [CLN025, "villin_2f4k.pdb", "engrailed_homeodomain_1enh.pdb", "ntl9_2hba.pdb"]
)
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_bonded_terms_consistent(pdb: str, mapping: str) -> None:
    traj = _load(_pdb(pdb))[0]
    cg, xyz = map_to_cg(traj, mapping, source=pdb)
    _bonded_consistent(cg)
    lengths = np.linalg.norm(xyz[0, cg.bonds[:, 0]] - xyz[0, cg.bonds[:, 1]], axis=1)
    assert lengths.max() < (0.2 if mapping == "5bead" else 0.45)
    assert set(cg.bead_types) <= set(protein_bead_vocabulary(mapping))


def test_two_chains_are_not_bonded() -> None:
    traj = _load(_pdb("ntl9_2hba.pdb"))
    cg, _ = map_to_cg(traj, "5bead")
    assert cg.n_beads == 2 * 255 and set(cg.chain_ids) == {"A", "B"}
    chain = np.array(cg.chain_ids)
    assert np.all(chain[cg.bonds[:, 0]] == chain[cg.bonds[:, 1]])
    assert len(cg.bonds) == 2 * 254
    for het in ("ZN", "CL", "IMD", "HOH"):
        assert het not in cg.residue_names


def test_selection_by_chain_and_residues() -> None:
    traj = _load(_pdb("ntl9_2hba.pdb"))
    cg, _ = map_to_cg(traj, "5bead", chains=["A"], residues=(1, 39))
    assert set(cg.chain_ids) == {"A"} and cg.residue_ids.min() == 1 and cg.residue_ids.max() == 39
    # The atom indices point into the whole file.
    atoms = list(traj.topology.atoms)
    assert [atoms[i].residue.chain.chain_id for i in cg.atom_indices] == ["A"] * cg.n_beads
    with pytest.raises(TopologyError, match="no protein residues"):
        map_to_cg(traj, "5bead", chains=["Q"])


def test_chain_break_makes_no_bond(tmp_path: pathlib.Path) -> None:
    lines = [ln for ln in _atom_lines(_pdb(CLN025)) if not (_is_atom(ln) and _resseq(ln) == 5)]
    traj = _load(_write(tmp_path, "gap.pdb", lines))
    cg, _ = map_to_cg(traj, "5bead")
    assert cg.n_beads == 49 - 5
    # Residue 5 took 4 bonds within it and 2 peptide bonds; 4 and 6 are too far apart.
    assert len(cg.bonds) == 48 - 4 - 2
    c4 = cg.bead_names.index("C", int(np.flatnonzero(cg.residue_ids == 4)[0]))
    n6 = int(np.flatnonzero(cg.residue_ids == 6)[0])
    assert [c4, n6] not in cg.bonds.tolist()
    _bonded_consistent(cg)
    ca, _ = map_to_cg(traj, "ca")
    assert ca.n_beads == 9 and len(ca.bonds) == 7


# ----------------------------------------------------------------------------- exclusions


def _graph_distance_pairs(cg: CGTopology, order: int) -> set[tuple[int, int]]:
    adjacency: list[list[int]] = [[] for _ in range(cg.n_beads)]
    for i, j in cg.bonds.tolist():
        adjacency[i].append(j)
        adjacency[j].append(i)
    pairs = set()
    for start in range(cg.n_beads):
        depth = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for nxt in adjacency[node]:
                if nxt not in depth and depth[node] < order:
                    depth[nxt] = depth[node] + 1
                    queue.append(nxt)
        pairs |= {(start, other) for other in depth if other > start}
    return pairs


def test_excluded_pairs(cln025) -> None:
    _, cg, _ = cln025
    empty = cg.excluded_pairs(0)
    assert empty.shape == (0, 2) and empty.dtype == np.int64
    np.testing.assert_array_equal(cg.excluded_pairs(1), cg.bonds)
    # The 5-bead graph is a tree: 1-3 and 1-4 pairs are distinct from each other and from bonds.
    assert len(cg.excluded_pairs(2)) == 48 + 65
    assert len(cg.excluded_pairs(3)) == 48 + 65 + 71
    assert len(cg.excluded_pairs()) == 48 + 65
    for order in (1, 2, 3):
        pairs = cg.excluded_pairs(order)
        assert pairs.dtype == np.int64 and np.all(pairs[:, 0] < pairs[:, 1])
        assert pairs.tolist() == sorted(pairs.tolist())
        assert {tuple(p) for p in pairs.tolist()} == _graph_distance_pairs(cg, order)
    for bad in (-1, 4, 1.5):
        with pytest.raises(ValueError, match="0..3"):
            cg.excluded_pairs(bad)


# ----------------------------------------------------------------------------- mdtraj export


def test_to_mdtraj_round_trip(cln025, tmp_path: pathlib.Path) -> None:
    _, cg, xyz = cln025
    top = cg.to_mdtraj()
    assert top.n_atoms == 49 and top.n_residues == 10 and top.n_chains == 1
    assert top.n_bonds == len(cg.bonds)
    path = tmp_path / "cg.pdb"
    mdtraj.Trajectory(xyz.astype(np.float32), top).save_pdb(str(path))
    back = _load(path)
    assert back.n_atoms == cg.n_beads
    assert [a.name for a in back.topology.atoms] == list(cg.bead_names)
    assert [a.residue.name for a in back.topology.atoms] == list(cg.residue_names)
    assert [a.residue.resSeq for a in back.topology.atoms] == cg.residue_ids.tolist()
    assert [a.element.symbol for a in back.topology.atoms][:5] == ["N", "C", "C", "C", "O"]
    np.testing.assert_allclose(back.xyz[0], xyz[0], atol=2e-4)  # PDB keeps 3 decimals in A


def test_to_mdtraj_norleucine_and_ca(tmp_path: pathlib.Path) -> None:
    traj = _load(_pdb("villin_2f4k.pdb"))
    for mapping in MAPPINGS:
        cg, xyz = map_to_cg(traj, mapping)
        assert cg.residue_names.count("NLE") == 2 * len(BEAD_NAMES[mapping])
        path = tmp_path / f"villin_{mapping}.pdb"
        mdtraj.Trajectory(xyz.astype(np.float32), cg.to_mdtraj()).save_pdb(str(path))
        back = _load(path)
        assert [a.name for a in back.topology.atoms] == list(cg.bead_names)
        assert back.topology.n_residues == 35


def test_replicate(cln025) -> None:
    _, cg, _ = cln025
    rep = cg.replicate(3)
    assert rep.n_beads == 3 * 49 and rep.name == "chignolin_x3"
    assert len(rep.bonds) == 3 * 48 and len(rep.dihedrals) == 3 * 71
    np.testing.assert_array_equal(rep.bonds[48:96], cg.bonds + 49)
    np.testing.assert_array_equal(rep.angles[-65:], cg.angles + 98)
    assert rep.bead_types[49:98] == cg.bead_types
    np.testing.assert_array_equal(rep.atom_indices[49:98], cg.atom_indices)
    pairs = rep.excluded_pairs(3)
    assert len(pairs) == 3 * len(cg.excluded_pairs(3))
    assert np.all(pairs[:, 0] // 49 == pairs[:, 1] // 49)  # no pair across copies
    top = rep.to_mdtraj()
    assert top.n_chains == 3 and top.n_residues == 30
    assert cg.replicate(1).n_beads == 49
    for bad in (0, -2):
        with pytest.raises(ValueError, match="n >= 1"):
            cg.replicate(bad)


def test_topology_arrays_are_read_only(cln025) -> None:
    _, cg, _ = cln025
    with pytest.raises(ValueError):
        cg.bonds[0, 0] = 5
    assert cg.residue_ids.dtype == np.int64 and cg.atom_indices.dtype == np.int64


# ----------------------------------------------------------------------------- errors


def _edit(path: pathlib.Path, resseq: int, edit) -> list[str]:
    return [edit(ln) if _is_atom(ln) and _resseq(ln) == resseq else ln for ln in _atom_lines(path)]


def test_unknown_residue_raises(tmp_path: pathlib.Path) -> None:
    lines = _edit(_pdb(CLN025), 3, lambda ln: ln[:17] + "XYZ" + ln[20:])
    path = _write(tmp_path, "renamed.pdb", lines)
    with pytest.raises(TopologyError) as info:
        map_to_cg(_load(path), "5bead", source=str(path))
    message = str(info.value)
    assert "renamed.pdb" in message and "XYZ" in message and " 3" in message
    assert "chain A" in message and "TYR" in message  # lists allowed names
    assert isinstance(info.value, ValueError)


def test_hetero_group_without_backbone_is_skipped(tmp_path: pathlib.Path) -> None:
    lines = _atom_lines(_pdb(CLN025))
    het = "HETATM  999 ZN    ZN A 200      10.000  10.000  10.000  1.00 10.00          ZN"
    at = max(i for i, ln in enumerate(lines) if _is_atom(ln)) + 1
    traj = _load(_write(tmp_path, "zinc.pdb", lines[:at] + [het] + lines[at:]))
    cg, _ = map_to_cg(traj)
    assert cg.n_beads == 49 and "ZN" not in cg.residue_names


def test_alias_is_resolved(tmp_path: pathlib.Path) -> None:
    lines = _edit(_pdb(CLN025), 3, lambda ln: ln[:17] + "ASH" + ln[20:])
    cg, _ = map_to_cg(_load(_write(tmp_path, "ash.pdb", lines)))
    assert cg.bead_types[10:15] == ("ASP.N", "ASP.CA", "ASP.CB", "ASP.C", "ASP.O")


def test_missing_backbone_atom_raises(tmp_path: pathlib.Path) -> None:
    lines = [
        ln
        for ln in _atom_lines(_pdb(CLN025))
        if not (_is_atom(ln) and _resseq(ln) == 2 and ln[12:16].strip() == "CA")
    ]
    path = _write(tmp_path, "no_ca.pdb", lines)
    with pytest.raises(TopologyError) as info:
        map_to_cg(_load(path), "5bead", source=str(path))
    message = str(info.value)
    assert "no_ca.pdb" in message and "'CA'" in message and "TYR 2" in message


def test_missing_cb_raises_only_for_5bead(tmp_path: pathlib.Path) -> None:
    lines = [
        ln
        for ln in _atom_lines(_pdb(CLN025))
        if not (_is_atom(ln) and _resseq(ln) == 1 and ln[12:16].strip() == "CB")
    ]
    traj = _load(_write(tmp_path, "no_cb.pdb", lines))
    with pytest.raises(TopologyError, match="'CB'"):
        map_to_cg(traj, "5bead")
    assert map_to_cg(traj, "ca")[0].n_beads == 10


def test_no_protein_raises(tmp_path: pathlib.Path) -> None:
    waters = [ln for ln in _atom_lines(_pdb(CLN025)) if _is_atom(ln) and "HOH" in ln] + ["END"]
    with pytest.raises(TopologyError, match="no protein residues"):
        map_to_cg(_load(_write(tmp_path, "water.pdb", waters)), source="water.pdb")


def test_unknown_mapping_raises(cln025) -> None:
    traj, _, _ = cln025
    with pytest.raises(ValueError, match="unknown CG mapping"):
        map_to_cg(traj, "3bead")
