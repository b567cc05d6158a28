"""TorchMD-Net ``graph-network`` (SchNet) checkpoints as gnnmd models.

A TorchMD-Net checkpoint is a Lightning-style dict: ``hyper_parameters`` (the
``torchmd-train`` arguments) and ``state_dict`` (``model.representation_model.*``,
``model.output_model.*``, ``model.prior_model.*``, ``model.mean``, ``model.std``).
Its SchNet computes, per atom i of type z_i, with distances d in the source length unit::

    x_i  ← embedding(z_i)                          [neighbour embedding, optional]
    x_i  ← x_i + lin(act(lin2(Σ_j lin1(x_j) ⊙ mlp(rbf(d_ij)) · C(d_ij))))     per block
    E    = Σ_i (out(x_i) · std + atomref(z_i)) + mean

over every pair inside [cutoff_lower, cutoff_upper] (no bonded exclusions), which is
gnnmd's SchNet with ``exclusion_order=0``; the conversion only changes units: the basis
is re-expressed in nm, and the readout's last layer, the atom references and the mean
are scaled to kJ/mol (``std`` is folded into the last layer).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from gnnmd.errors import ImportModelError
from gnnmd.interop import check_type_map, require
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.nn.priors import PriorSet
from gnnmd.units import energy_to_kj_per_mol, length_to_nm

#: TorchMD-Net's activation names and gnnmd's (``swish`` with β = 1 is SiLU).
ACTIVATIONS = {
    "ssp": "ssp",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "mish": "mish",
}
RADIAL_BASES = {"gauss": "gaussian", "expnorm": "expnormal"}

#: The TorchMD coarse-grained convention (torchmd-cg, the protein-thermodynamics models): the
#: embedding index of each residue's CA bead, and the PSF atom type torchmd-cg writes for it.
TORCHMD_CG_EMBEDDINGS = {
    "ALA": 1, "GLY": 2, "PHE": 3, "TYR": 4, "ASP": 5, "GLU": 6, "TRP": 7, "PRO": 8, "ASN": 9,
    "GLN": 10, "HIS": 11, "SER": 12, "THR": 13, "VAL": 14, "MET": 15, "CYS": 16, "NLE": 17,
    "ARG": 18, "LYS": 19, "LEU": 20, "ILE": 21,
}  # fmt: skip
ONE_LETTER = {
    "ALA": "A", "GLY": "G", "PHE": "F", "TYR": "Y", "ASP": "D", "GLU": "E", "TRP": "W", "PRO": "P",
    "ASN": "N", "GLN": "Q", "HIS": "H", "SER": "S", "THR": "T", "VAL": "V", "MET": "M", "CYS": "C",
    "ARG": "R", "LYS": "K", "LEU": "L", "ILE": "I",
}  # fmt: skip
#: PSF atom type (``CA`` + one-letter code) -> gnnmd bead type of the ``ca`` mapping.
TORCHMD_CG_PSF_TYPES = {f"CA{code}": f"{residue}.CA" for residue, code in ONE_LETTER.items()}


def torchmd_cg_types() -> dict[str, int]:
    """gnnmd bead type (``"TYR.CA"``) -> embedding index, the TorchMD CG convention."""
    return {f"{residue}.CA": index for residue, index in TORCHMD_CG_EMBEDDINGS.items()}


def convert(
    checkpoint: Mapping[str, Any],
    source: Path,
    types: Mapping[str, int],
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
    priors: PriorSet | None = None,
    prior_options: Mapping[str, Any] | None = None,
) -> CGPotential:
    """A gnnmd model (float64) computing the checkpoint's energy, in nm and kJ/mol.

    Args:
        checkpoint: the loaded checkpoint dict.
        source: its path (for messages).
        types: bead type name -> embedding index; the model's vocabulary, in this order.
        length_unit, energy_unit: the units the model was trained in.
        priors: converted TorchMD priors to add (see :mod:`gnnmd.interop.torchmd_priors`), or None.
        prior_options: with priors: ``terms`` (gnnmd prior terms), ``repulsion_exclusions`` and
            ``tables`` (the float64 prior tables, restored without rounding).
    """
    args, state = _parts(checkpoint, source)
    to_nm, to_kj = length_to_nm(length_unit), energy_to_kj_per_mol(energy_unit)
    options = dict(prior_options or {})
    config = _config(args, source, to_nm, priors is not None, max(readout_layers(state) - 2, 0))
    if readout_layers(state) < 2:
        raise ImportModelError(f"{source}: state_dict has no output MLP ('output_model.output_network.*')")
    if priors is not None:
        config = dataclasses.replace(
            config,
            prior_terms=tuple(options["terms"]),
            repulsion_exclusions=tuple(options["repulsion_exclusions"]),
        )
    check_type_map(types, int(args["max_z"]), source, "embedding index")
    vocabulary = list(types)
    rows = torch.tensor([types[name] for name in vocabulary], dtype=torch.int64)
    # float64 throughout: the checkpoint keeps the source's weights without rounding
    # (load_model(..., dtype=torch.float64) gets them back exactly).
    model = CGPotential(config, vocabulary, priors).double()
    if priors is not None:
        model.priors.set_values(options["tables"])
    network_state = _network_state(args, state, rows, to_nm, to_kj, source)
    try:
        model.network.load_state_dict(network_state)
    except RuntimeError as error:
        raise ImportModelError(
            f"{source}: the state_dict does not match its hyper_parameters ({error})"
        ) from None
    return model.eval()


def _parts(checkpoint: Any, source: Path) -> tuple[dict, dict]:
    if (
        not isinstance(checkpoint, Mapping)
        or "hyper_parameters" not in checkpoint
        or "state_dict" not in checkpoint
    ):
        raise ImportModelError(
            f"{source}: not a TorchMD-Net checkpoint (a dict with 'hyper_parameters' and 'state_dict')"
        )
    state = {re.sub(r"^model\.", "", key): value for key, value in checkpoint["state_dict"].items()}
    return dict(checkpoint["hyper_parameters"]), state


def _config(
    args: dict,
    source: Path,
    to_nm: float,
    with_priors: bool,
    hidden_readout_layers: int,
) -> PotentialConfig:
    """Check every option against gnnmd's SchNet and build the matching config."""
    model = args.get("model")
    require(
        model == "graph-network",
        source,
        "model",
        model,
        "gnnmd imports TorchMD-Net's SchNet ('graph-network')",
    )
    for option, allowed in (("output_model", "Scalar"), ("reduce_op", "sum"), ("aggr", "add")):
        value = args.get(option, allowed)
        require(value == allowed, source, option, value, f"gnnmd implements {allowed!r} only")
    require(
        args.get("box_vecs") is None, source, "box_vecs", args.get("box_vecs"), "a box fixed inside the model"
    )
    atom_filter = args.get("atom_filter", -1)
    require(atom_filter == -1, source, "atom_filter", atom_filter, "atoms excluded from the energy")
    activation = args.get("activation")
    require(activation in ACTIVATIONS, source, "activation", activation, f"gnnmd has {sorted(ACTIVATIONS)}")
    rbf = args.get("rbf_type")
    require(rbf in RADIAL_BASES, source, "rbf_type", rbf, f"gnnmd has {sorted(RADIAL_BASES)}")
    _check_priors(args, source)
    lower, upper = float(args["cutoff_lower"]), float(args["cutoff_upper"])
    return PotentialConfig(
        hidden_channels=int(args["embedding_dimension"]),
        num_filters=int(args["embedding_dimension"]),
        num_interactions=int(args["num_layers"]),
        num_rbf=int(args["num_rbf"]),
        rbf=RADIAL_BASES[rbf],
        cutoff_nm=upper * to_nm,
        activation=ACTIVATIONS[activation],
        exclusion_order=0,
        use_priors=with_priors,
        lower_cutoff_nm=lower * to_nm,
        rbf_envelope=rbf == "expnorm",
        neighbor_embedding=bool(args.get("neighbor_embedding", False)),
        readout_hidden_layers=hidden_readout_layers,
        repulsion_shift=False,
    )


def _check_priors(args: dict, source: Path) -> None:
    """TorchMD-Net's own priors: only Atomref (per-type reference energies) has a gnnmd form."""
    names = args.get("prior_model")
    if not names:
        return
    listed = names if isinstance(names, list) else [names]
    for entry in listed:
        for name in entry if isinstance(entry, dict) else [entry]:
            require(name == "Atomref", source, "prior_model", names, "gnnmd imports the Atomref prior only")


def _network_state(
    args: dict, state: dict, rows: Tensor, to_nm: float, to_kj: float, source: Path
) -> dict[str, Tensor]:
    """gnnmd's SchNet state dict, in nm and kJ/mol, with embedding rows ``rows``."""

    def take(key: str) -> Tensor:
        if key not in state:
            raise ImportModelError(f"{source}: state_dict has no {key!r}")
        return state[key].detach().to(torch.float64)

    out: dict[str, Tensor] = {"embedding.weight": take("representation_model.embedding.weight")[rows]}
    out.update(_basis_state(args, take, to_nm))
    if args.get("neighbor_embedding", False):
        prefix = "representation_model.neighbor_embedding."
        out["neighbor_embedding.embedding.weight"] = take(prefix + "embedding.weight")[rows]
        for name, ours in (("distance_proj", "filter_net.0"), ("combine", "combine")):
            out[f"neighbor_embedding.{ours}.weight"] = take(prefix + name + ".weight")
            out[f"neighbor_embedding.{ours}.bias"] = take(prefix + name + ".bias")
    for block in range(int(args["num_layers"])):
        prefix, ours = f"representation_model.interactions.{block}.", f"interactions.{block}."
        for theirs, mine in (("mlp.0", "filter_net.0"), ("mlp.2", "filter_net.2"), ("conv.lin2", "f2out"),
                             ("lin", "dense")):  # fmt: skip
            out[ours + mine + ".weight"] = take(prefix + theirs + ".weight")
            out[ours + mine + ".bias"] = take(prefix + theirs + ".bias")
        out[ours + "in2f.weight"] = take(prefix + "conv.lin1.weight")
    out.update(_readout_state(args, state, take, to_kj))
    energy = torch.zeros(int(args["max_z"]), dtype=torch.float64)
    if "prior_model.0.atomref.weight" in state and _atomref_enabled(args):
        energy = take("prior_model.0.atomref.weight")[:, 0]
    out["type_energy"] = energy[rows] * to_kj
    out["molecule_energy"] = (take("mean").reshape(()) if "mean" in state else torch.zeros(())) * to_kj
    return out


def _basis_state(args: dict, take, to_nm: float) -> dict[str, Tensor]:
    prefix = "representation_model.distance_expansion."
    num_rbf = int(args["num_rbf"])
    if args["rbf_type"] == "gauss":
        coeff = take(prefix + "coeff")  # exp(coeff (d - offset)²), coeff = -1/(2 σ²) in 1/source²
        widths = torch.sqrt(-0.5 / coeff).expand(num_rbf) * to_nm
        return {"basis.centers": take(prefix + "offset") * to_nm, "basis.widths": widths.clone()}
    # exp(-β (exp(α (lower - d)) - μ)²) = exp(-β c² (exp(-α d) - μ / c)²) with c = exp(α lower).
    alpha = 5.0 / (float(args["cutoff_upper"]) - float(args["cutoff_lower"]))
    scale = math.exp(alpha * float(args["cutoff_lower"]))
    return {"basis.means": take(prefix + "means") / scale, "basis.betas": take(prefix + "betas") * scale**2}


def _readout_state(args: dict, state: dict, take, to_kj: float) -> dict[str, Tensor]:
    """The output MLP, with ``std`` and the energy unit folded into its last layer."""
    layers = readout_layers(state)
    modern = "output_model.output_network.layers.0.weight" in state
    out = {}
    for k in range(layers):
        theirs = f"output_model.output_network.{'layers.' if modern else ''}{2 * k}"
        out[f"readout.{2 * k}.weight"] = take(theirs + ".weight")
        out[f"readout.{2 * k}.bias"] = take(theirs + ".bias")
    std = take("std").reshape(()) if "std" in state else torch.ones((), dtype=torch.float64)
    last = f"readout.{2 * (layers - 1)}"
    out[last + ".weight"] = out[last + ".weight"] * std * to_kj
    out[last + ".bias"] = out[last + ".bias"] * std * to_kj
    return out


def readout_layers(state: Mapping[str, Tensor]) -> int:
    """Linear layers of the output MLP, counted in the state dict (the hyper-parameters do not say:
    TorchMD-Net's ``Scalar`` ignores ``output_mlp_num_layers``)."""
    pattern = re.compile(r"^output_model\.output_network\.(?:layers\.)?(\d+)\.weight$")
    return sum(1 for key in state if pattern.match(key))


def _atomref_enabled(args: dict) -> bool:
    prior_args = args.get("prior_args")
    listed = prior_args if isinstance(prior_args, list) else [prior_args]
    return all(not isinstance(a, dict) or a.get("enable", True) for a in listed)


def types_from_file(path: Path) -> dict[str, int]:
    """A TYPES.json map {type name: embedding index}; errors name the file and the entry."""
    import json

    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ImportModelError(f"{path}: not a readable JSON type map ({error})") from None
    if not isinstance(values, dict) or not values:
        raise ImportModelError(f"{path}: expected a JSON object {{type name: embedding index}}")
    for name, index in values.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise ImportModelError(f"{path}: type {name!r} maps to {index!r}, not an integer index")
    return dict(values)
