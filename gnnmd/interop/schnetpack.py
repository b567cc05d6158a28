"""SchNetPack SchNet potentials (``NeuralNetworkPotential`` saved whole) as gnnmd models.

SchNetPack's pipeline, with distances d in the model's length unit and atoms typed by Z::

    x_i ← embedding(Z_i)
    x_i ← x_i + f2out₂(act(f2out₁(Σ_j in2f(x_j) ⊙ filter(rbf(d_ij)) · C(d_ij))))    per block
    E   = Σ_i outnet(x_i) [+ mean · n_atoms] [+ Σ_i atomref(Z_i)]

over every pair its neighbour list finds inside the cutoff: gnnmd's SchNet with
``exclusion_order=0`` and an element vocabulary (an all-atom model). The model object
is read by attribute, not run; every module or option gnnmd does not implement is
refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols
from torch import Tensor, nn

from gnnmd.errors import ImportModelError
from gnnmd.interop import require
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.units import energy_to_kj_per_mol, length_to_nm

#: SchNetPack activations (functions or modules, by name) and gnnmd's.
ACTIVATIONS = {"shifted_softplus": "ssp", "ShiftedSoftplus": "ssp", "silu": "silu", "SiLU": "silu",
               "tanh": "tanh",
               "Tanh": "tanh"}  # fmt: skip
#: Modules that may sit around the network without changing its energy.
HARMLESS_INPUTS = {"PairwiseDistances", "CastTo32"}
HARMLESS_OUTPUTS = {"Forces"}


def convert(
    model: nn.Module,
    source: Path,
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
    elements: list[int] | None = None,
) -> CGPotential:
    """A gnnmd model (float64) computing ``model``'s energy in nm and kJ/mol.

    ``elements`` restricts the vocabulary to these atomic numbers (default: every element
    the embedding has, H upwards).
    """
    name = type(model).__name__
    require(name == "NeuralNetworkPotential", source, "model", name, "gnnmd imports NeuralNetworkPotential")
    representation = model.representation
    kind = type(representation).__name__
    require(kind == "SchNet", source, "representation", kind, "gnnmd imports SchNet")
    _check_surroundings(model, source)
    energy_key, atomwise = _energy_output(model, source)
    to_nm, to_kj = length_to_nm(length_unit), energy_to_kj_per_mol(energy_unit)
    block = representation.interactions[0]
    activation = _activation_of(block.filter_network[0], source)
    update = _activation_of(block.f2out[0], source)
    require(update == activation, source, "activation", f"{activation} (filter), {update} (update)",
            "gnnmd has one activation per block")  # fmt: skip
    readout_activation = _activation_of(atomwise.outnet[0], source)
    hidden = _readout_hidden_layers(atomwise, representation.n_atom_basis, source)
    cutoff = float(representation.cutoff_fn.cutoff) * to_nm
    num_rbf = int(representation.radial_basis.n_rbf)
    config = PotentialConfig(
        hidden_channels=int(representation.n_atom_basis), num_filters=int(representation.n_filters),
        num_interactions=len(representation.interactions), num_rbf=num_rbf, rbf="gaussian",
        cutoff_nm=cutoff, activation=activation, exclusion_order=0, use_priors=False,
        readout_hidden_layers=hidden, readout_activation=readout_activation,
    )  # fmt: skip
    rows = list(elements) if elements else list(range(1, representation.embedding.num_embeddings))
    vocabulary = [chemical_symbols[z] for z in rows]
    converted = CGPotential(config, vocabulary, None).double()
    state = _network_state(representation, atomwise, rows, to_nm, to_kj)
    state.update(_offsets(model, energy_key, rows, to_kj, source))
    converted.network.load_state_dict(state)
    return converted.eval()


def _check_surroundings(model: nn.Module, source: Path) -> None:
    for module in model.input_modules:
        kind = type(module).__name__
        require(
            kind in HARMLESS_INPUTS, source, "input_modules", kind, f"gnnmd accepts {sorted(HARMLESS_INPUTS)}"
        )
    representation = model.representation
    electronic = [type(m).__name__ for m in representation.electronic_embeddings]
    require(not electronic, source, "electronic_embeddings", electronic, "charge/spin embeddings")
    embedding = type(representation.embedding).__name__
    require(
        embedding == "Embedding", source, "nuclear_embedding", embedding, "gnnmd has a plain type embedding"
    )
    basis = type(representation.radial_basis).__name__
    require(basis == "GaussianRBF", source, "radial_basis", basis, "gnnmd imports GaussianRBF")
    cutoff = type(representation.cutoff_fn).__name__
    require(cutoff == "CosineCutoff", source, "cutoff_fn", cutoff, "gnnmd imports CosineCutoff")


def _energy_output(model: nn.Module, source: Path) -> tuple[str, nn.Module]:
    atomwise = [m for m in model.output_modules if type(m).__name__ == "Atomwise"]
    others = [type(m).__name__ for m in model.output_modules
              if type(m).__name__ not in HARMLESS_OUTPUTS | {"Atomwise"}]  # fmt: skip
    require(
        not others, source, "output_modules", others, "gnnmd computes an Atomwise energy (and its forces)"
    )
    require(len(atomwise) == 1, source, "output_modules", len(atomwise), "exactly one Atomwise energy")
    module = atomwise[0]
    require(module.n_out == 1, source, "Atomwise.n_out", module.n_out, "a scalar energy")
    require(module.aggregation_mode == "sum", source, "Atomwise.aggregation_mode", module.aggregation_mode,
            "an energy sums over atoms")  # fmt: skip
    return module.output_key, module


def _activation_of(layer: nn.Module, source: Path) -> str:
    function = getattr(layer, "activation", None)
    name = getattr(function, "__name__", type(function).__name__)
    require(name in ACTIVATIONS, source, "activation", name, f"gnnmd has {sorted(set(ACTIVATIONS.values()))}")
    return ACTIVATIONS[name]


def _readout_hidden_layers(atomwise: nn.Module, width: int, source: Path) -> int:
    """gnnmd's readout is H → H/2 (→ H/2 ...) → 1; SchNetPack's default pyramid of 2 layers is that."""
    layers = [m for m in atomwise.outnet if isinstance(m, nn.Linear)]
    shape = [layers[0].in_features] + [layer.out_features for layer in layers]
    expected = [width] + [width // 2] * (len(layers) - 1) + [1]
    require(shape == expected, source, "Atomwise.outnet", shape, f"gnnmd's readout has widths {expected}")
    return len(layers) - 2


def _network_state(
    representation, atomwise, rows: list[int], to_nm: float, to_kj: float
) -> dict[str, Tensor]:
    def f64(tensor: Tensor) -> Tensor:
        return tensor.detach().to(torch.float64)

    basis = representation.radial_basis
    out = {
        "embedding.weight": f64(representation.embedding.weight)[rows],
        "basis.centers": f64(basis.offsets) * to_nm,
        "basis.widths": f64(basis.widths) * to_nm,
    }
    for k, block in enumerate(representation.interactions):
        prefix = f"interactions.{k}."
        pieces = {"filter_net.0": block.filter_network[0], "filter_net.2": block.filter_network[1],
                  "f2out": block.f2out[0], "dense": block.f2out[1]}  # fmt: skip
        for ours, layer in pieces.items():
            out[prefix + ours + ".weight"] = f64(layer.weight)
            out[prefix + ours + ".bias"] = f64(layer.bias)
        out[prefix + "in2f.weight"] = f64(block.in2f.weight)
    linear = [m for m in atomwise.outnet if isinstance(m, nn.Linear)]
    for k, layer in enumerate(linear):
        scale = to_kj if k == len(linear) - 1 else 1.0
        out[f"readout.{2 * k}.weight"] = f64(layer.weight) * scale
        out[f"readout.{2 * k}.bias"] = f64(layer.bias) * scale
    return out


def _offsets(
    model: nn.Module, energy_key: str, rows: list[int], to_kj: float, source: Path
) -> dict[str, Tensor]:
    """Mean and atom references of AddOffsets as per-element and per-molecule energies."""
    type_energy = torch.zeros(len(rows), dtype=torch.float64)
    molecule = torch.zeros((), dtype=torch.float64)
    for module in getattr(model, "postprocessors", []):
        kind = type(module).__name__
        if kind == "CastTo64":
            continue
        require(kind == "AddOffsets", source, "postprocessors", kind, "gnnmd applies CastTo64 and AddOffsets")
        require(module._property == energy_key, source, "AddOffsets.property", module._property,
                f"offsets of the energy {energy_key!r}")  # fmt: skip
        mean = float(module.mean.reshape(-1)[0])
        if module.add_mean and module.is_extensive:
            type_energy += mean * to_kj
        elif module.add_mean:
            molecule += mean * to_kj
        if module.add_atomrefs:
            require(
                module.is_extensive, source, "AddOffsets.is_extensive", False, "atom references of an energy"
            )
            type_energy += module.atomref.detach().to(torch.float64)[rows] * to_kj
    if not getattr(model, "do_postprocessing", True):
        type_energy.zero_()
        molecule.zero_()
    return {"type_energy": type_energy, "molecule_energy": molecule}


def read_model(path: Path, allow_pickle: bool) -> Any:
    """The pickled model object (SchNetPack saves models whole with ``torch.save``)."""
    from gnnmd.interop import read_source_file

    _allow_schnetpack_2_1_import()
    model = read_source_file(path, "schnetpack", allow_pickle)
    if not isinstance(model, nn.Module):
        raise ImportModelError(f"{path}: expected a SchNetPack model saved with torch.save(model), got a "
                               f"{type(model).__name__}")  # fmt: skip
    return model


def _allow_schnetpack_2_1_import() -> None:
    """SchNetPack 2.1 imports ``T_co`` from ``torch.utils.data.dataloader``, which torch 2.9 no
    longer defines (2.2 needs Python 3.12); unpickling its models imports it. Define the name."""
    import typing

    import torch.utils.data.dataloader as dataloader

    if not hasattr(dataloader, "T_co"):
        dataloader.T_co = typing.TypeVar("T_co", covariant=True)
