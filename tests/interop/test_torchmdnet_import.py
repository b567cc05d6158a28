"""TorchMD-Net graph-network models imported into gnnmd compute what TorchMD-Net computes.

Models are built with random weights by TorchMD-Net's own constructor, saved the way its
training saves them (a Lightning-style dict), loaded back by TorchMD-Net and compared with
the import on real structures, in float64 (energies and forces to 1e-5 relative) and on
every kernel backend in float32.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnmd.errors import BeadTypeError, ImportModelError
from gnnmd.interop import torchmdnet as tmn
from gnnmd.nn.backends import use_backend
from gnnmd.systems import load_system

pytest.importorskip("torchmdnet", reason="the comparison runs TorchMD-Net itself (test extras)")
from torchmdnet.models.model import create_model  # noqa: E402
from torchmdnet.models.model import load_model as torchmdnet_load  # noqa: E402

warnings.filterwarnings("ignore", message=".*CUDA.*")

KCAL = 4.184  # kJ per kcal, checked against openmm.unit in tests/unit/test_units.py


def hyper_parameters(**changes) -> dict:
    args = dict(
        model="graph-network", embedding_dimension=32, num_layers=2, num_rbf=16, rbf_type="expnorm",
        trainable_rbf=True, activation="silu", neighbor_embedding=True, cutoff_lower=0.0, cutoff_upper=9.0,
        max_z=25, max_num_neighbors=128, aggr="add", precision=64, derivative=True, atom_filter=-1,
        prior_model=None, output_model="Scalar", reduce_op="sum", box_vecs=None,
    )  # fmt: skip
    args.update(changes)
    return args


def save_checkpoint(path: Path, seed: int = 0, **changes) -> Path:
    """A TorchMD-Net model with random (non-initial) weights, saved as its training saves it."""
    args = hyper_parameters(**changes)
    torch.manual_seed(seed)
    dtype = torch.float64 if args["precision"] == 64 else torch.float32
    model = create_model(dict(args), mean=torch.tensor(3.0, dtype=dtype), std=torch.tensor(2.0, dtype=dtype))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "coeff" not in name:  # a Gaussian width must stay a width
                parameter.add_(0.2 * torch.randn_like(parameter))
        if model.prior_model is not None:
            model.prior_model[0].atomref.weight.normal_()
    state = {"model." + key: value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": args, "state_dict": state, "epoch": 3}, path)
    return path


def reference(path: Path, z: torch.Tensor, positions_nm: np.ndarray) -> tuple[float, torch.Tensor]:
    """TorchMD-Net's energy (kJ/mol) and forces (kJ/mol/nm) for one molecule."""
    model = torchmdnet_load(str(path))
    dtype = next(model.parameters()).dtype
    energy, forces = model(z, torch.tensor(positions_nm * 10.0, dtype=dtype))
    return float(energy) * KCAL, forces.detach().to(torch.float64) * KCAL * 10.0


def structure(name: str, mapping: str):
    system = load_system(name, mapping)
    return system.topology, np.asarray(system.positions_nm, dtype=np.float64)


OPTIONS = {
    "expnorm-neighbours-silu": {},
    "gauss-ssp": dict(rbf_type="gauss", activation="ssp", neighbor_embedding=False, trainable_rbf=False),
    "lower-cutoff-tanh": dict(cutoff_lower=3.0, activation="tanh"),
    "atomref-sigmoid": dict(prior_model="Atomref", prior_args={"max_z": 25}, activation="sigmoid"),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("protein", ["chignolin", "engrailed"])
def test_ca_model_matches_torchmdnet_in_float64(tmp_path, option, protein):
    path = save_checkpoint(tmp_path / "model.ckpt", **OPTIONS[option])
    topology, positions = structure(protein, "ca")
    types = tmn.torchmd_cg_types()
    z = torch.tensor([types[t] for t in topology.bead_types])
    expected_energy, expected_forces = reference(path, z, positions)
    model = tmn.convert(torch.load(path, weights_only=True), path, types)
    energy, forces = model.energy_and_forces(torch.tensor(positions), model.pack([topology]))
    # 1e-5 relative; TorchMD-Net's shifted softplus subtracts log 2 rounded to float32 (2e-9 per call).
    assert abs(float(energy[0]) - expected_energy) <= 1e-5 * abs(expected_energy)
    scale = expected_forces.pow(2).mean().sqrt()
    assert float((forces - expected_forces).abs().max()) <= 1e-5 * float(scale)


def test_five_bead_model_with_a_type_map(tmp_path):
    topology, positions = structure("chignolin", "5bead")
    names = sorted(set(topology.bead_types))
    types = {name: 1 + i for i, name in enumerate(names)}
    path = save_checkpoint(tmp_path / "model.ckpt", seed=3, max_z=len(names) + 1, cutoff_upper=12.0)
    z = torch.tensor([types[t] for t in topology.bead_types])
    expected_energy, expected_forces = reference(path, z, positions)
    model = tmn.convert(torch.load(path, weights_only=True), path, types)
    energy, forces = model.energy_and_forces(torch.tensor(positions), model.pack([topology]))
    assert abs(float(energy[0]) - expected_energy) <= 1e-5 * abs(expected_energy)
    assert float((forces - expected_forces).abs().max()) <= 1e-5 * float(expected_forces.pow(2).mean().sqrt())


@pytest.mark.parametrize("option", ["expnorm-neighbours-silu", "lower-cutoff-tanh"])
def test_float32_and_every_backend(tmp_path, option):
    path = save_checkpoint(tmp_path / "model.ckpt", precision=32, **OPTIONS[option])
    topology, positions = structure("engrailed", "ca")
    types = tmn.torchmd_cg_types()
    z = torch.tensor([types[t] for t in topology.bead_types])
    expected_energy, expected_forces = reference(path, z, positions)
    model = tmn.convert(torch.load(path, weights_only=True), path, types).float()
    x = torch.tensor(positions, dtype=torch.float32)
    batch = model.pack([topology])
    scale = float(expected_forces.pow(2).mean().sqrt())
    energy, forces = model.energy_and_forces(x, batch)
    assert abs(float(energy[0]) - expected_energy) <= 1e-4 * abs(expected_energy)
    assert float((forces.double() - expected_forces).abs().max()) <= 1e-4 * scale
    for backend, tolerance in (("fused", 1e-4), ("tabulated", 1e-3)):
        fast = use_backend(model, backend)
        _, fast_forces = fast.energy_and_forces(x, batch)
        error = float((fast_forces.double() - expected_forces).pow(2).mean().sqrt())
        assert error <= tolerance * scale, backend


REFUSED = {
    "model": dict(model="transformer"),
    "reduce_op": dict(reduce_op="mean"),
    "aggr": dict(aggr="max"),
    "prior_model": dict(prior_model="D2"),
    "box_vecs": dict(box_vecs=[[50.0, 0, 0], [0, 50.0, 0], [0, 0, 50.0]]),
    "atom_filter": dict(atom_filter=3),
    "activation": dict(activation="gelu"),
    "rbf_type": dict(rbf_type="bessel"),
}


@pytest.mark.parametrize("option", sorted(REFUSED))
def test_unsupported_options_are_refused_by_name(option):
    checkpoint = {"hyper_parameters": hyper_parameters(**REFUSED[option]), "state_dict": {}}
    with pytest.raises(ImportModelError, match=f"option {option}="):
        tmn.convert(checkpoint, Path("model.ckpt"), tmn.torchmd_cg_types())


def test_type_index_outside_the_embedding_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "model.ckpt")
    with pytest.raises(ImportModelError, match="embedding index 40"):
        tmn.convert(torch.load(path, weights_only=True), path, {"TYR.CA": 40})


def test_not_a_checkpoint_is_refused():
    with pytest.raises(ImportModelError, match="not a TorchMD-Net checkpoint"):
        tmn.convert({"weights": torch.zeros(3)}, Path("x.ckpt"), tmn.torchmd_cg_types())


def test_a_bead_type_the_map_lacks_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "model.ckpt")
    model = tmn.convert(torch.load(path, weights_only=True), path, {"TYR.CA": 4})
    topology, _ = structure("chignolin", "ca")
    with pytest.raises(BeadTypeError, match="ASP.CA"):
        model.pack([topology])


def test_types_file_errors_name_the_entry(tmp_path):
    bad = tmp_path / "types.json"
    bad.write_text(json.dumps({"CAY": "four"}))
    with pytest.raises(ImportModelError, match="'CAY' maps to 'four'"):
        tmn.types_from_file(bad)
