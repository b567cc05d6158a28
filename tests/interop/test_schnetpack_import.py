"""SchNetPack SchNet potentials imported into gnnmd compute what SchNetPack computes.

Models are built by SchNetPack's own constructors with random weights, saved whole with
``torch.save(model)`` as its users do, and evaluated by SchNetPack's own pipeline
(AtomsConverter with its ASE neighbour list) on small molecules and a protein.
"""

from __future__ import annotations

from pathlib import Path

import ase.build
import ase.io
import numpy as np
import pytest
import torch

from gnnmd.cli import main
from gnnmd.errors import ImportModelError
from gnnmd.interop.importing import import_schnetpack
from gnnmd.interop.schnetpack import _allow_schnetpack_2_1_import
from gnnmd.models import load_model
from gnnmd.systems import systems_dir
from gnnmd.topology import custom_topology

_allow_schnetpack_2_1_import()  # before SchNetPack 2.1 is imported (see the function)
spk = pytest.importorskip("schnetpack", reason="the comparison runs SchNetPack itself (test extras)")

CUTOFF = 5.0  # Å


def build(activation=None, n_layers=2, n_hidden=None, mean=True, atomrefs=True, seed=0, shared=False):
    torch.manual_seed(seed)
    options = {} if activation is None else {"activation": activation}
    representation = spk.representation.SchNet(
        n_atom_basis=32, n_interactions=3, n_filters=24, shared_interactions=shared,
        radial_basis=spk.nn.GaussianRBF(n_rbf=20, cutoff=CUTOFF), cutoff_fn=spk.nn.CosineCutoff(CUTOFF),
        **options,
    )  # fmt: skip
    energy = spk.atomistic.Atomwise(
        n_in=32, output_key="energy", n_layers=n_layers, n_hidden=n_hidden, **options
    )
    postprocessors = [spk.transform.CastTo64()]
    if mean or atomrefs:
        postprocessors.append(spk.transform.AddOffsets("energy", add_mean=mean, add_atomrefs=atomrefs))
    model = spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[energy, spk.atomistic.Forces(energy_key="energy", force_key="forces")],
        postprocessors=postprocessors,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        if mean or atomrefs:
            model.postprocessors[1].mean.fill_(-3.5)
            model.postprocessors[1].atomref.copy_(torch.randn(100))
    return model


def reference(model, atoms) -> tuple[float, torch.Tensor]:
    """SchNetPack's energy (kJ/mol) and forces (kJ/mol/nm), its model units taken as kcal/mol and Å."""
    converter = spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.ASENeighborList(cutoff=CUTOFF), dtype=torch.float64
    )
    out = model.double()(converter(atoms))
    return float(out["energy"][0]) * 4.184, out["forces"].detach() * 41.84


def molecules():
    protein = ase.io.read(systems_dir() / "chignolin_cln025_5awl.pdb")
    protein.pbc = False  # the PDB's CRYST1 record would make SchNetPack's neighbour list periodic
    return {
        "ethanol": ase.build.molecule("CH3CH2OH"),
        "benzene": ase.build.molecule("C6H6"),
        "chignolin": protein,
    }


def gnnmd_energy(model, atoms) -> tuple[float, torch.Tensor]:
    topology = custom_topology("m", atoms.get_chemical_symbols(), atoms.get_masses(), [])
    positions = torch.tensor(atoms.positions * 0.1, dtype=torch.float64)
    energy, forces = model.energy_and_forces(positions, model.pack([topology]))
    return float(energy[0]), forces


OPTIONS = {
    "default": {},
    "silu-hidden": dict(activation=torch.nn.functional.silu, n_layers=3, n_hidden=16),
    "no-offsets": dict(mean=False, atomrefs=False),
    "shared-blocks": dict(shared=True),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_schnetpack_model_matches_in_float64(tmp_path, option):
    path = tmp_path / "best_model"
    torch.save(build(**OPTIONS[option]), path)
    model = import_schnetpack(path, allow_pickle=True)
    source = torch.load(path, weights_only=False)
    for name, atoms in molecules().items():
        expected_energy, expected_forces = reference(source, atoms)
        energy, forces = gnnmd_energy(model, atoms)
        assert abs(energy - expected_energy) <= 1e-5 * max(abs(expected_energy), 1.0), name
        scale = float(expected_forces.pow(2).mean().sqrt())
        assert float((forces - expected_forces).abs().max()) <= 1e-5 * scale, name


def test_cli_import_float32_and_backends(tmp_path, capsys):
    path = tmp_path / "best_model"
    source = build(seed=4)
    torch.save(source, path)
    out = tmp_path / "imported.pt"
    assert main(["import", "schnetpack", str(path), "--elements", "1,6,7,8", "-o", str(out)]) == 0
    assert "unpickling" in capsys.readouterr().err  # the import says it runs the full unpickler
    atoms = molecules()["chignolin"]
    expected_energy, expected_forces = reference(source, atoms)
    scale = float(expected_forces.pow(2).mean().sqrt())
    model = load_model(out)
    assert model.vocabulary == ["H", "C", "N", "O"]
    assert model.metadata["imported_from"]["library"] == "schnetpack"
    from gnnmd.nn.backends import use_backend

    topology = custom_topology("m", atoms.get_chemical_symbols(), atoms.get_masses(), [])
    positions = torch.tensor(atoms.positions * 0.1, dtype=torch.float32)
    batch = model.pack([topology])
    energy, forces = model.energy_and_forces(positions, batch)
    assert abs(float(energy[0]) - expected_energy) <= 1e-4 * abs(expected_energy)
    assert float((forces.double() - expected_forces).abs().max()) <= 1e-4 * scale
    for backend, tolerance in (("fused", 1e-4), ("tabulated", 1e-3)):
        _, fast = use_backend(model, backend).energy_and_forces(positions, batch)
        assert float((fast.double() - expected_forces).pow(2).mean().sqrt()) <= tolerance * scale, backend


def test_ase_calculator_takes_the_imported_model(tmp_path):
    from gnnmd.ase import GNNMDCalculator

    path = tmp_path / "best_model"
    source = build(seed=2)
    torch.save(source, path)
    out = tmp_path / "imported.pt"
    import_schnetpack(path, out, allow_pickle=True)
    atoms = molecules()["ethanol"]
    expected_energy, expected_forces = reference(source, atoms)
    atoms.calc = GNNMDCalculator(model=str(out))
    # ASE units: eV and eV/Å.
    assert abs(atoms.get_potential_energy() * 96.48533212331002 - expected_energy) <= 1e-4 * abs(
        expected_energy
    )
    np.testing.assert_allclose(
        atoms.get_forces() * 964.8533212331002, expected_forces.numpy(), rtol=1e-3, atol=1e-2
    )


REFUSED = {
    "radial_basis": lambda m: setattr(
        m.representation, "radial_basis", spk.nn.BesselRBF(n_rbf=20, cutoff=CUTOFF)
    ),
    "cutoff_fn": lambda m: setattr(m.representation, "cutoff_fn", spk.nn.MollifierCutoff(CUTOFF)),
    "Atomwise.aggregation_mode": lambda m: setattr(m.output_modules[0], "aggregation_mode", "avg"),
    "activation": lambda m: setattr(
        m.representation.interactions[0].filter_network[0], "activation", spk.nn.activations.softplus_inverse
    ),
}


@pytest.mark.parametrize("option", sorted(REFUSED))
def test_unsupported_options_are_refused_by_name(tmp_path, option):
    model = build()
    REFUSED[option](model)
    path = tmp_path / "model"
    torch.save(model, path)
    with pytest.raises(ImportModelError, match=f"option {option}="):
        import_schnetpack(path, allow_pickle=True)


def test_pickled_model_is_refused_without_permission(tmp_path):
    path = tmp_path / "model"
    torch.save(build(), path)
    with pytest.raises(ImportModelError, match="not a readable schnetpack file"):
        import_schnetpack(path)


def test_pyramid_readout_deeper_than_gnnmd_is_refused(tmp_path):
    path = tmp_path / "model"
    torch.save(build(n_layers=3), path)
    with pytest.raises(ImportModelError, match="Atomwise.outnet"):
        import_schnetpack(Path(path), allow_pickle=True)


class _Exploit:
    """Unpickling it creates a file: proof that code ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_a_pickle_naming_foreign_code_is_refused_before_unpickling(tmp_path):
    path = tmp_path / "model"
    torch.save({"model": _Exploit(tmp_path / "pwned")}, path)
    with pytest.raises(ImportModelError, match="refused before unpickling"):
        import_schnetpack(path, allow_pickle=True)
    assert not (tmp_path / "pwned").exists()


def test_a_pickle_hiding_a_module_name_in_its_memo_is_refused(tmp_path):
    """``builtins`` pushed once and fetched back from the memo for ``open``: a scan that only
    follows the strings in order would read it as another module's."""
    import zipfile

    sentinel = str(tmp_path / "pwned")
    data = (b"\x80\x04" + b"\x8c\x08builtins\x94" + b"0" + b"\x8c\x05torch\x94" + b"0" + b"h\x00"
            + b"\x8c\x04open" + b"\x93" + b"\x8c" + bytes([len(sentinel)]) + sentinel.encode()
            + b"\x85R.")  # fmt: skip
    torch.save({"a": torch.zeros(1)}, tmp_path / "base.pt")
    path = tmp_path / "model"
    with zipfile.ZipFile(tmp_path / "base.pt") as source, zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            out.writestr(info, data if info.filename.endswith("data.pkl") else source.read(info.filename))
    with pytest.raises(ImportModelError, match="refused"):
        import_schnetpack(path, allow_pickle=True)
    assert not Path(sentinel).exists()
