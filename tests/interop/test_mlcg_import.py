"""mlcg CGSchNet models imported into gnnmd compute what mlcg computed.

mlcg cannot be installed in CI (it is not on the package index), so the comparison is with a
fixture mlcg itself produced: two models saved by ``torch.save`` and mlcg's energies and
forces on chignolin frames, made by ``scripts/make_mlcg_fixture.py`` from mlcg's public
source (commit in ``data/mlcg/fixture.json``). Tolerances: float64 1e-9 relative (the
weights are float32 values carried exactly), float32 1e-4, tabulated 1e-3 of the force RMS.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnmd.cli import main
from gnnmd.errors import BeadTypeError, ImportModelError
from gnnmd.graph import model_bead_types
from gnnmd.interop import mlcg
from gnnmd.interop.importing import import_mlcg
from gnnmd.interop.opaque_pickle import Opaque, read_opaque
from gnnmd.models import load_model
from gnnmd.nn.backends import use_backend
from gnnmd.nn.priors.base import canonical_tuple
from gnnmd.systems import load_system

DATA = Path(__file__).parent / "data" / "mlcg"
KCAL = 4.184  # kJ per kcal, checked against openmm.unit in tests/unit/test_units.py
#: fixture -> (gnnmd mapping, the repulsion list the fixture's model used)
FIXTURES = {
    "ca": ("ca", "all"),
    "ca_terminal": ("ca", "all"),
    "opeps": ("5bead", "nonbonded"),
    "opeps_residue": ("5bead", "nonbonded-residue"),
}
#: Fixtures that evaluate another fixture's model file (with other term lists).
MODEL_FILE = {"opeps_residue": "opeps"}


def reference(kind: str) -> dict[str, np.ndarray]:
    return dict(np.load(DATA / f"{kind}_reference.npz"))


def imported(kind: str, **options):
    mapping, pairs = FIXTURES[kind]
    path = DATA / f"{MODEL_FILE.get(kind, kind)}_model.pt"
    return import_mlcg(path, topology="chignolin", mapping=mapping, repulsion_pairs=pairs, **options)


def energies_and_forces(model, topology, frames_nm: np.ndarray, dtype=torch.float64):
    batch = model.pack([topology])
    out = [model.energy_and_forces(torch.tensor(frame, dtype=dtype), batch) for frame in frames_nm]
    return np.array([float(e[0]) for e, _ in out]), np.stack([f.detach().double().numpy() for _, f in out])


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_import_matches_mlcg_in_float64(kind):
    model, topology = imported(kind)
    data = reference(kind)
    energies, forces = energies_and_forces(model, topology, data["positions_angstrom"] * 0.1)
    expected_energy = data["energy_kcal_per_mol"] * KCAL
    expected_forces = data["forces_kcal_per_mol_per_angstrom"] * KCAL * 10.0
    assert np.abs(energies - expected_energy).max() <= 1e-9 * np.abs(expected_energy).max()
    assert np.abs(forces - expected_forces).max() <= 1e-9 * np.abs(expected_forces).max()


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_gnnmd_topology_is_the_one_mlcg_built(kind):
    """The type convention gives mlcg's atom types, and gnnmd's bonded terms are mlcg's lists."""
    mapping, _ = FIXTURES[kind]
    topology = load_system("chignolin", mapping).topology
    data = reference(kind)
    terminal = kind == "ca_terminal"
    types = mlcg.convention_types(mapping, special_terminal=terminal)
    assert [types[t] for t in model_bead_types(topology, types, terminal)] == data["atom_types"].tolist()

    def terms(rows) -> set:
        return {canonical_tuple(tuple(int(i) for i in row)) for row in rows}

    assert terms(topology.bonds) == terms(data["terms_bonds"].T)
    assert terms(topology.angles) == terms(data["terms_angles"].T)
    if "terms_dihedrals" in data:
        assert terms(topology.dihedrals) == terms(data["terms_dihedrals"].T)
    pairs = terms(data["terms_repulsion"].T)
    n = topology.n_beads
    if mapping == "ca":  # fully connected: every pair
        assert pairs == {(i, j) for i in range(n) for j in range(i + 1, n)}
    else:  # more than two bonds apart (and, with the residue exclusion, in different residues)
        near = terms(topology.bonds) | terms(topology.angles[:, [0, 2]])
        if kind == "opeps_residue":
            same = topology.residue_ids[:, None] == topology.residue_ids[None, :]
            near |= {(i, j) for i in range(n) for j in range(i + 1, n) if same[i, j]}
        assert pairs == {(i, j) for i in range(n) for j in range(i + 1, n)} - near


@pytest.mark.parametrize("kind", ["ca", "ca_terminal"])
def test_cli_import_float32_and_backends(tmp_path, capsys, kind):
    out = tmp_path / "imported.pt"
    argv = ["import", "mlcg", str(DATA / f"{kind}_model.pt"), "--mapping", "ca", "--topology", "chignolin"]
    argv += ["-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "mlcg CGSchNet" in printed.out and "chignolin" in printed.out
    model = load_model(str(out))  # an ordinary checkpoint, loaded safely, float32 by default
    source = model.metadata["imported_from"]
    assert source["library"] == "mlcg" and source["repulsion_pairs"] == "all"
    assert source["sha256"] and source["length_unit"] == "angstrom"
    assert source["special_terminal"] is (kind == "ca_terminal") is model.config.terminal_types
    assert ("chain ends typed apart" in printed.out) is (kind == "ca_terminal")
    topology = load_system("chignolin", "ca").topology
    data = reference(kind)
    frames = data["positions_angstrom"] * 0.1
    expected = data["forces_kcal_per_mol_per_angstrom"] * KCAL * 10.0
    scale = float(np.sqrt((expected**2).mean()))
    _, forces = energies_and_forces(model, topology, frames, torch.float32)
    assert np.abs(forces - expected).max() <= 1e-4 * np.abs(expected).max()
    for backend, tolerance in (("fused", 1e-4), ("tabulated", 1e-3)):
        _, fast = energies_and_forces(use_backend(model, backend), topology, frames, torch.float32)
        assert float(np.sqrt(((fast - expected) ** 2).mean())) <= tolerance * scale, backend


def test_enveloped_basis_runs_tabulated_and_the_fused_torch_path(tmp_path):
    model, topology = imported("opeps")
    model = model.float()
    data = reference("opeps")
    frames = data["positions_angstrom"][:2] * 0.1
    expected = data["forces_kcal_per_mol_per_angstrom"][:2] * KCAL * 10.0
    scale = float(np.sqrt((expected**2).mean()))
    for backend, tolerance in (("fused", 1e-4), ("tabulated", 1e-3)):
        _, fast = energies_and_forces(use_backend(model, backend), topology, frames, torch.float32)
        assert float(np.sqrt(((fast - expected) ** 2).mean())) <= tolerance * scale, backend
    from gnnmd.kernels.triton_kernels import fused_unsupported

    fused = use_backend(model, "fused")
    assert fused_unsupported(fused.network.interactions[0].kernel) == ""  # the Triton kernel computes it


def test_exported_torchscript_matches(tmp_path):
    model, topology = imported("ca")
    scripted = torch.jit.script(model)
    batch = model.pack([topology])
    x = torch.tensor(reference("ca")["positions_angstrom"][1] * 0.1)
    assert torch.allclose(scripted(x, batch), model(x, batch), rtol=1e-12, atol=0)


def test_reading_runs_no_code_from_the_file(tmp_path):
    """A pickle whose objects would call os.system comes back as inert records."""
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    torch.save({"model": Exploit()}, path)
    found = read_opaque(path, "mlcg")
    assert not marker.exists()
    assert isinstance(found["model"], Opaque) and found["model"].class_name == "system"
    with pytest.raises(ImportModelError, match="not a pickled mlcg model"):
        mlcg.convert(found, path, mlcg.convention_types("ca"))
    assert not marker.exists()


def test_not_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(ImportModelError, match="model.pt: not a readable mlcg model file"):
        import_mlcg(path, mapping="ca")


def _node(root: Opaque, *path: str) -> Opaque:
    node = root
    for name in path:
        node = node.module(name)
    return node


SCHNET = ("models", "SchNet", "model")
BLOCK = (*SCHNET, "interaction_blocks", "0")


def _set_class(*path: str, class_path: str):
    def change(root):
        _node(root, *path).class_path = class_path

    return change


def _set_attribute(*path: str, name: str, value):
    def change(root):
        _node(root, *path).state[name] = value

    return change


def _unpair_orientation(root):
    bonds = _node(root, "models", "bonds", "model")
    first = bonds.state["allowed_interaction_keys"][0]
    bonds.state["_buffers"]["k"][first] += 1.0


REFUSED = {
    "StandardSchNet": _set_class(*SCHNET, class_path="mlcg.nn.schnet.AttentiveSchNet"),
    "ExpRepulsion": _set_class(
        "models", "repulsion", "model", class_path="mlcg.nn.prior.repulsion.ExpRepulsion"
    ),
    "activation": _set_class(*BLOCK, "activation", class_path="torch.nn.modules.activation.GELU"),
    "aggr": _set_attribute(*BLOCK, "conv", name="aggr", value="mean"),
    "cutoff_upper": _set_attribute(*BLOCK, "conv", "cutoff", name="cutoff_upper", value=25.0),
    "IdentityCutoff": _set_class(*BLOCK, "conv", "cutoff", class_path="mlcg.nn.cutoff.IdentityCutoff"),
    "GaussianBasis": _set_class(
        *SCHNET, "rbf_layer", class_path="mlcg.nn.radial_basis.exp_normal.ExpNormalBasis"
    ),
    "self_interaction": _set_attribute(*SCHNET, name="self_interaction", value=True),
    "orientation": _unpair_orientation,
}


@pytest.mark.parametrize("option", sorted(REFUSED))
def test_unsupported_parts_are_refused_by_name(option):
    path = DATA / "ca_model.pt"
    root = read_opaque(path, "mlcg")
    REFUSED[option](root)
    with pytest.raises(ImportModelError, match="ca_model.pt") as error:
        mlcg.convert(root, path, mlcg.convention_types("ca"))
    message = str(error.value)
    named = {"orientation": "reverse", "cutoff_upper": "25", "IdentityCutoff": "IdentityCutoff",
             "ExpRepulsion": "ExpRepulsion", "activation": "GELU"}  # fmt: skip
    assert named.get(option, option) in message


def test_type_outside_the_embedding_is_refused():
    path = DATA / "ca_model.pt"
    with pytest.raises(ImportModelError, match="'TYR.CA' maps to atom type 99, outside the model"):
        mlcg.convert(read_opaque(path, "mlcg"), path, {"TYR.CA": 99})


def test_bad_repulsion_pairs_and_mapping_are_refused():
    with pytest.raises(ImportModelError, match="repulsion pairs 'some'"):
        import_mlcg(DATA / "ca_model.pt", mapping="ca", repulsion_pairs="some")
    with pytest.raises(ImportModelError, match="not 'martini'"):
        mlcg.convention_types("martini")


def test_fixture_records_its_source():
    record = json.loads((DATA / "fixture.json").read_text())
    assert len(record["mlcg_commit"]) == 40 and record["structure"].endswith(".pdb")


def test_checkpoint_round_trip_keeps_every_part(tmp_path):
    """Cosine angles, enveloped trainable basis and readout widths survive save and safe load."""
    out = tmp_path / "opeps.pt"
    model, topology = imported("opeps", output=out)
    loaded = load_model(str(out), dtype=torch.float64)
    assert loaded.config.readout_widths == (10,) and loaded.config.rbf_envelope
    assert "cos_theta0" in loaded.priors.angles.parameter_names
    frames = reference("opeps")["positions_angstrom"][:2] * 0.1
    expected, _ = energies_and_forces(model, topology, frames)
    energies, _ = energies_and_forces(loaded, topology, frames)
    assert np.array_equal(energies, expected)


def test_special_terminal_read_from_the_priors_or_given():
    """mlcg's default special_terminal types the chain ends t + len(CA_MAP): read from the priors'
    type tables; an explicit answer that contradicts the model leaves its ends without priors."""
    plain, _ = imported("ca")
    ends, _ = imported("ca_terminal")
    assert not plain.config.terminal_types and ends.config.terminal_types
    assert "TYR.CA-terminal" in ends.vocabulary and "TYR.CA-terminal" not in plain.vocabulary
    with pytest.raises(BeadTypeError, match="bond prior has no parameters"):  # fitted on end types
        imported("ca_terminal", special_terminal=False)
    schnet, _ = mlcg.prior_parts(read_opaque(DATA / "ca_terminal_model.pt", "mlcg"), DATA)
    _, alone = mlcg.prior_parts(schnet, DATA)  # the SchNet saved on its own: no priors
    with pytest.raises(ImportModelError, match="special_terminal"):  # no priors: nothing tells
        mlcg.special_terminal_of(alone, DATA / "ca_terminal_model.pt", "ca")


def test_special_terminal_from_a_types_file(tmp_path):
    types = mlcg.convention_types("ca", special_terminal=True, type_count=42)
    assert types["TYR.CA-terminal"] == 40 and types["ALA.CA-terminal"] == 21
    path = tmp_path / "types.json"
    path.write_text(json.dumps(types))
    model, topology = imported("ca_terminal", types=str(path))
    data = reference("ca_terminal")
    energies, _ = energies_and_forces(model, topology, data["positions_angstrom"] * 0.1)
    assert np.allclose(energies, data["energy_kcal_per_mol"] * KCAL, rtol=1e-9, atol=0)
    with pytest.raises(ImportModelError, match="special_terminal=False"):
        imported("ca_terminal", types=str(path), special_terminal=False)


def test_terminal_types_follow_each_molecule_in_a_batch():
    model, topology = imported("ca_terminal")
    batch = model.pack([topology, topology])
    names = [model.vocabulary[i] for i in batch.types.tolist()]
    ends = [i for i, name in enumerate(names) if name.endswith("-terminal")]
    assert ends == [0, 9, 10, 19]
    lone = model_bead_types(topology, model.vocabulary, True)
    assert lone[0] == "TYR.CA-terminal" and lone[-1] == "TYR.CA-terminal" and lone[1] == "TYR.CA"


@pytest.mark.parametrize("spelling, expected", [("HSD", 9), ("HIS", 8), ("HSE", 8), ("HIE", 8)])
def test_histidine_spellings_take_mlcg_types(spelling, expected):
    """CA_MAP types HSD apart (9) from HIS (8); gnnmd's own models read every spelling as HIS."""
    import mdtraj

    from gnnmd.protein_mapping import map_to_cg

    structure = mdtraj.load(str(load_system("chignolin", "ca").pdb_path))
    structure.topology.residue(3).name = spelling
    topology, _ = map_to_cg(structure, "ca", "his", f"chignolin with residue 4 as {spelling}")
    assert topology.residue_names[3] == "HIS" and topology.residue_variants[3] == spelling
    types = mlcg.convention_types("ca", special_terminal=True)
    vocabulary = list(types)
    names = model_bead_types(topology, vocabulary, terminal_types=True)
    assert types[names[3]] == expected
    assert names[0] == "TYR.CA-terminal" and topology.replicate(2).residue_variants[13] == spelling
    own = ["HIS.CA", *sorted({t for t in topology.bead_types if t != "HIS.CA"})]
    assert model_bead_types(topology, own)[3] == "HIS.CA"  # a vocabulary without HSD: the canonical type


@pytest.mark.parametrize("backend, tolerance", [("fused", 1e-6), ("tabulated", 1e-3)])
def test_residue_exclusion_on_fast_backends_and_in_torchscript(tmp_path, backend, tolerance):
    """The residue-excluded repulsion (mlcg's make_non_bonded_set default) through the native prior
    ops (tabulated), the fused kernels and a TorchScript export, against mlcg's forces."""
    from gnnmd.export import export_potential

    model, topology = imported("opeps_residue")
    assert model.config.repulsion_residue_exclusion
    data = reference("opeps_residue")
    frames = data["positions_angstrom"] * 0.1
    expected = data["forces_kcal_per_mol_per_angstrom"] * KCAL * 10.0
    scale = float(np.sqrt((expected**2).mean()))
    fast = use_backend(model, backend)
    _, forces = energies_and_forces(fast, topology, frames)
    assert float(np.sqrt(((forces - expected) ** 2).mean())) <= tolerance * scale
    exported = export_potential(fast, topology, dtype=torch.float64)  # TorchScript
    energy = float(exported(torch.tensor(frames[1])))
    assert energy == pytest.approx(data["energy_kcal_per_mol"][1] * KCAL, rel=max(tolerance, 1e-9))


def test_residue_exclusion_in_static_packs(one_thread):
    """Fixed-size packs (the IPU path) number residues per pack and give each padding node its own:
    three chignolins in packs of two equal the dynamic batch."""
    from gnnmd.static.model import StaticEvaluator, build_static

    model, topology = imported("opeps_residue")
    frames = reference("opeps_residue")["positions_angstrom"][1:] * 0.1
    x = torch.tensor(np.concatenate(frames), dtype=torch.float64)
    topologies = [topology] * len(frames)
    static, layout = build_static(model, topologies, x, target_nodes=2 * topology.n_beads + 4)
    assert layout.num_packs == 2
    energies, forces = StaticEvaluator(layout, static, static.max_edges, model.cutoff_nm)(x)
    expected_energies, expected_forces = model.energy_and_forces(x, model.pack(topologies))
    torch.testing.assert_close(energies, expected_energies, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(forces, expected_forces, rtol=1e-10, atol=1e-9)
