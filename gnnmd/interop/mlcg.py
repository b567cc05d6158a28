"""mlcg ``CGSchNet`` models (``torch.save``\\ d whole) as gnnmd models.

An mlcg model is a ``SumOut`` of ``GradientsOut``-wrapped parts: one ``StandardSchNet`` and
its priors (see :mod:`gnnmd.interop.mlcg_priors`). The file is read with
:func:`~gnnmd.interop.opaque_pickle.read_opaque` — no mlcg code is imported or run, and mlcg
need not be installed. Its SchNet computes, with distances d in the source length unit::

    x_i ← embedding(z_i)
    x_i ← x_i + lin(act(lin2(Σ_j lin1(x_j) ⊙ filter(rbf(d_ij)) · C(d_ij))))     per block
    E   = Σ_i out(x_i)

over every pair closer than the basis's upper cutoff, both directions, no bonded exclusions:
gnnmd's SchNet with ``exclusion_order=0``, the readout widths of mlcg's
``output_hidden_layer_widths``, the basis multiplied by its cutoff when that is a
``CosineCutoff``. Bias-free last layers (mlcg's ``last_bias=False``) become zero biases.

**Bead types.** mlcg types beads by integer: the model's ``atom_types``. The conventions of
mlcg's own mappings are built in (:data:`CA_TYPES`, ``CA_MAP``; :data:`OPEPS_TYPES`, ``OPEPS_MAP``:
N, CA, C, O shared by all residues, CB per residue); a TYPES.json ``{"TYR.CA": 19, ...}``
gives any other. mlcg's ``special_terminal`` (its default) gives the first and last bead of a
molecule the type ``t + len(mapping)`` (21 for ``CA_MAP``, 99 for ``OPEPS_MAP``): gnnmd names them
``"TYR.CA-terminal"`` and sets the model's ``terminal_types`` (:func:`special_terminal_of` reads
whether the model was trained so from its priors). ``CA_MAP``'s own type for HSD residues is
``"HSD.CA"`` (:func:`gnnmd.graph.model_bead_types`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from gnnmd.errors import ImportModelError
from gnnmd.graph import TERMINAL_SUFFIX
from gnnmd.interop import check_type_map, require
from gnnmd.interop.mlcg_priors import REPULSION_PAIRS, build_priors, prior_atom_types, prior_parts
from gnnmd.interop.opaque_pickle import Opaque
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.units import energy_to_kj_per_mol, length_to_nm

#: mlcg's ``CA_MAP``: the atom type of each residue's CA bead (HSD, CHARMM's δ-protonated histidine,
#: has its own; other histidine spellings are HIS here, where mlcg would drop their bead).
CA_TYPES = {
    "ALA": 0, "ARG": 1, "ASN": 2, "ASP": 3, "CYS": 4, "GLN": 5, "GLU": 6, "GLY": 7, "HIS": 8,
    "ILE": 10, "LEU": 11, "LYS": 12, "MET": 13, "PHE": 14, "PRO": 15, "SER": 16, "THR": 17,
    "TRP": 18, "TYR": 19, "VAL": 20, "HSD": 9,
}  # fmt: skip
#: mlcg's ``OPEPS_MAP``: CB types per residue; N, CA, C, O are shared (GLY's CA has its own).
_OPEPS_CB = {
    "ALA": 1, "CYS": 2, "ASP": 3, "GLU": 4, "PHE": 5, "HIS": 7, "ILE": 8, "LYS": 9, "LEU": 10,
    "MET": 11, "ASN": 12, "PRO": 13, "GLN": 14, "ARG": 15, "SER": 16, "THR": 17, "VAL": 18,
    "TRP": 19, "TYR": 20,
}  # fmt: skip
_OPEPS_BACKBONE = {"N": 21, "CA": 22, "C": 23, "O": 24}
OPEPS_TYPES = {
    **{
        f"{residue}.{bead}": index
        for residue in (*_OPEPS_CB, "GLY")
        for bead, index in _OPEPS_BACKBONE.items()
    },
    **{f"{residue}.CB": index for residue, index in _OPEPS_CB.items()},
    "GLY.CA": 6,
}
#: Entries of mlcg's ``CA_MAP`` (HSD included) and ``OPEPS_MAP``: ``special_terminal`` adds this
#: many to the types of a molecule's first and last bead.
MAP_SIZES = {"ca": 21, "5bead": 99}

#: mlcg/torch activation modules by class name, and gnnmd's names.
ACTIVATIONS = {"Tanh": "tanh", "SiLU": "silu", "Sigmoid": "sigmoid", "Mish": "mish"}
_SCHNETS = ("mlcg.nn.schnet.StandardSchNet", "mlcg.nn.schnet.SchNet")


def convention_types(
    mapping: str, special_terminal: bool = False, type_count: int | None = None
) -> dict[str, int]:
    """gnnmd bead type (``"TYR.CA"``) -> mlcg atom type, for gnnmd's ``ca`` or ``5bead`` mapping.

    With ``special_terminal`` the chain-end types (``"TYR.CA-terminal"``) follow, those below
    ``type_count`` (the model's embedding rows) only: an end type the model has no row for is
    then an unknown bead type when a structure needs it.
    """
    if mapping == "ca":
        types = {f"{residue}.CA": index for residue, index in CA_TYPES.items()}
    elif mapping == "5bead":
        types = dict(OPEPS_TYPES)
    else:
        raise ImportModelError(
            f"mlcg type conventions exist for the 'ca' and '5bead' mappings, not {mapping!r}"
        )
    if special_terminal:
        shift = MAP_SIZES[mapping]
        types.update({name + TERMINAL_SUFFIX: index + shift for name, index in types.items()})
    return {name: index for name, index in types.items() if type_count is None or index < type_count}


def special_terminal_of(priors: Mapping[str, list], source: Path, mapping: str) -> bool:
    """Whether a model whose priors (:func:`~gnnmd.interop.mlcg_priors.prior_parts`) these are was
    trained with mlcg's ``special_terminal`` types for ``mapping``: its priors were fitted on atom
    types at or beyond the mapping's size. A model without priors does not tell."""
    if not priors:
        raise ImportModelError(
            f"{source}: the model has no priors, whose type tables would tell whether it was trained with "
            "mlcg's special_terminal types (its default): give special_terminal (--special-terminal yes|no)"
        )
    return max(prior_atom_types(priors)) >= MAP_SIZES[mapping]


def embedding_rows(schnet: Opaque) -> int:
    """Rows of the SchNet's type embedding (mlcg's ``embedding_size``)."""
    return int(schnet.module("embedding_layer").tensors()["weight"].shape[0])


def names_terminal_types(types: Mapping[str, int]) -> bool:
    """Whether a type map names chain-end types (``"TYR.CA-terminal"``)."""
    return any(name.endswith(TERMINAL_SUFFIX) for name in types)


def convert(
    root: Opaque,
    source: Path,
    types: Mapping[str, int],
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
    repulsion_pairs: str = "all",
) -> tuple[CGPotential, dict]:
    """A gnnmd model (float64) computing the mlcg model's energy in nm and kJ/mol.

    Args:
        root: the model file as :func:`~gnnmd.interop.opaque_pickle.read_opaque` reads it.
        source: its path (for messages).
        types: bead type name -> mlcg atom type; the model's vocabulary, in this order.
        length_unit, energy_unit: the units the model was trained in.
        repulsion_pairs: which pairs the repulsion prior's neighbour list held (see
            :data:`~gnnmd.interop.mlcg_priors.REPULSION_PAIRS`).
    Returns:
        (model, a description of what was imported, for the checkpoint's metadata).
    """
    if repulsion_pairs not in REPULSION_PAIRS:
        raise ImportModelError(
            f"repulsion pairs {repulsion_pairs!r}: choose one of {sorted(REPULSION_PAIRS)}"
        )
    schnet, priors = prior_parts(root, source)
    to_nm, to_kj = length_to_nm(length_unit), energy_to_kj_per_mol(energy_unit)
    vocabulary = list(types)
    check_type_map(types, embedding_rows(schnet), source, "atom type")
    config = dataclasses.replace(_config(schnet, source, to_nm), terminal_types=names_terminal_types(types))
    prior_set, options = None, {}
    if priors:
        prior_set, options = build_priors(
            priors, source, types, config.cutoff_nm, to_nm, to_kj, repulsion_pairs
        )
        config = dataclasses.replace(
            config,
            use_priors=True,
            prior_terms=tuple(options["terms"]),
            repulsion_exclusions=tuple(options["repulsion_exclusions"]),
            repulsion_residue_exclusion=options["residue_exclusion"],
        )
    model = CGPotential(config, vocabulary, prior_set).double()
    if prior_set is not None:
        model.priors.set_values(options["tables"])
    rows = torch.tensor([types[name] for name in vocabulary], dtype=torch.int64)
    try:
        model.network.load_state_dict(_network_state(schnet, rows, to_nm, to_kj, source))
    except RuntimeError as error:
        raise ImportModelError(
            f"{source}: the SchNet's weights do not fit its own layout ({error})"
        ) from None
    described = {"parts": options.get("parts", {}), "repulsion_pairs": repulsion_pairs if priors else None}
    return model.eval(), described


def _cutoff(node: Opaque, source: Path, where: str) -> tuple[float, float, bool]:
    """(lower, upper, is a cosine envelope) of an mlcg cutoff module."""
    kind = node.class_path
    require(
        kind in ("mlcg.nn.cutoff.CosineCutoff", "mlcg.nn.cutoff.IdentityCutoff"),
        source, where, kind, "gnnmd implements mlcg's CosineCutoff and IdentityCutoff",
    )  # fmt: skip
    lower, upper = float(node.attribute("cutoff_lower")), float(node.attribute("cutoff_upper"))
    return lower, upper, kind.endswith("CosineCutoff")


def _layers(mlp: Opaque, source: Path, where: str) -> list[Opaque]:
    require(mlp.class_path == "mlcg.nn.mlp.MLP", source, where, mlp.class_path, "gnnmd implements mlcg's MLP")
    return list(mlp.module("layers").modules().values())


def _activation(node: Opaque, source: Path, where: str) -> str:
    name = node.class_name
    require(name in ACTIVATIONS and node.class_path.startswith("torch.nn"), source, where, name,
            f"gnnmd has {sorted(ACTIVATIONS)}")  # fmt: skip
    return ACTIVATIONS[name]


def _config(schnet: Opaque, source: Path, to_nm: float) -> PotentialConfig:
    """Check every part of the SchNet against gnnmd's and build the matching config."""
    require(schnet.class_path in _SCHNETS, source, "SchNet", schnet.class_path,
            "gnnmd imports mlcg's StandardSchNet")  # fmt: skip
    require(not schnet.attribute("self_interaction", False), source, "self_interaction", True, "self pairs")
    rbf = schnet.module("rbf_layer")
    require(rbf.class_path == "mlcg.nn.radial_basis.gaussian.GaussianBasis", source, "rbf_layer",
            rbf.class_path, "gnnmd imports mlcg's GaussianBasis")  # fmt: skip
    basis_lower, basis_upper, enveloped = _cutoff(rbf.module("cutoff"), source, "rbf_layer.cutoff")
    blocks = list(schnet.module("interaction_blocks").modules().values())
    require(len(blocks) > 0, source, "interaction_blocks", 0, "a SchNet needs a block")
    activations, envelope = set(), set()
    for index, block in enumerate(blocks):
        where = f"interaction_blocks.{index}"
        require(block.class_path == "mlcg.nn.schnet.InteractionBlock", source, where, block.class_path,
                "gnnmd implements mlcg's InteractionBlock")  # fmt: skip
        conv = block.module("conv")
        require(conv.class_path == "mlcg.nn.schnet.CFConv", source, f"{where}.conv", conv.class_path,
                "gnnmd implements mlcg's CFConv")  # fmt: skip
        aggregation = conv.attribute("aggr")
        require(aggregation == "add", source, f"{where}.conv.aggr", aggregation, "gnnmd sums messages")
        envelope.add(_cutoff(conv.module("cutoff"), source, f"{where}.conv.cutoff"))
        layers = _layers(conv.module("filter_network"), source, f"{where}.conv.filter_network")
        require(len(layers) == 3, source, f"{where}.conv.filter_network", f"{len(layers)} layers",
                "gnnmd's filter is Linear, activation, Linear")  # fmt: skip
        activations.add(_activation(layers[1], source, f"{where}.conv.filter_network.layers.1"))
        activations.add(_activation(block.module("activation"), source, f"{where}.activation"))
        require("bias" not in conv.module("lin1").tensors(), source, f"{where}.conv.lin1.bias", "present",
                "gnnmd's lin1 has no bias")  # fmt: skip
    require(len(activations) == 1, source, "activation", sorted(activations), "one activation in every block")
    require(len(envelope) == 1, source, "conv.cutoff", sorted(envelope), "one cutoff in every block")
    lower, upper, cosine = envelope.pop()
    require(cosine, source, "conv.cutoff", "IdentityCutoff", "gnnmd's filters carry a cosine envelope")
    # The neighbour list radius is the basis's upper cutoff; the filters vanish at the conv's.
    require(basis_upper == upper, source, "rbf_layer.cutoff.cutoff_upper", basis_upper,
            f"it must equal the convolutions' cutoff_upper {upper}")  # fmt: skip
    require(not enveloped or basis_lower == lower, source, "rbf_layer.cutoff.cutoff_lower", basis_lower,
            f"it must equal the convolutions' cutoff_lower {lower}")  # fmt: skip
    readout = _layers(schnet.module("output_network"), source, "output_network")
    readout_acts = {_activation(layer, source, "output_network") for layer in readout[1::2]}
    require(len(readout_acts) <= 1, source, "output_network", sorted(readout_acts), "one activation")
    linear = readout[0::2]
    embedding = schnet.module("embedding_layer").tensors()["weight"]
    filters = blocks[0].module("conv").module("lin1").tensors()["weight"]
    return PotentialConfig(
        hidden_channels=int(embedding.shape[1]),
        num_filters=int(filters.shape[0]),
        num_interactions=len(blocks),
        num_rbf=int(rbf.tensors()["offset"].shape[0]),
        rbf="gaussian",
        cutoff_nm=upper * to_nm,
        activation=next(iter(activations)),
        exclusion_order=0,
        use_priors=False,
        lower_cutoff_nm=lower * to_nm,
        rbf_envelope=enveloped,
        readout_widths=tuple(int(layer.tensors()["weight"].shape[0]) for layer in linear[:-1]),
        readout_activation=next(iter(readout_acts), None),
        repulsion_shift=False,
    )


def _network_state(
    schnet: Opaque, rows: Tensor, to_nm: float, to_kj: float, source: Path
) -> dict[str, Tensor]:
    """gnnmd's SchNet state dict, in nm and kJ/mol, with embedding rows ``rows``."""

    def linear(node: Opaque, scale: float = 1.0) -> tuple[Tensor, Tensor]:
        found = node.tensors()
        weight = found["weight"].to(torch.float64)
        bias = found.get("bias", torch.zeros(weight.shape[0])).to(torch.float64)
        return weight * scale, bias * scale

    out = {"embedding.weight": schnet.module("embedding_layer").tensors()["weight"].to(torch.float64)[rows]}
    rbf = schnet.module("rbf_layer").tensors()
    coeff = rbf["coeff"].to(torch.float64)  # exp(coeff (d - offset)²), coeff = -1/(2 σ²), 1/source²
    if bool((coeff >= 0).any()):
        raise ImportModelError(
            f"{source}: rbf_layer.coeff must be negative (Gaussians), got {coeff.tolist()}"
        )
    centers = rbf["offset"].to(torch.float64)
    out["basis.centers"] = centers * to_nm
    out["basis.widths"] = (torch.sqrt(-0.5 / coeff) * to_nm).expand(centers.shape[0]).clone()
    for index, block in enumerate(schnet.module("interaction_blocks").modules().values()):
        ours, conv = f"interactions.{index}.", block.module("conv")
        layers = _layers(conv.module("filter_network"), source, "filter_network")
        pieces = {"filter_net.0": layers[0], "filter_net.2": layers[2], "f2out": conv.module("lin2"),
                  "dense": block.module("lin")}  # fmt: skip
        for mine, node in pieces.items():
            out[ours + mine + ".weight"], out[ours + mine + ".bias"] = linear(node)
        out[ours + "in2f.weight"] = linear(conv.module("lin1"))[0]
    readout = _layers(schnet.module("output_network"), source, "output_network")[0::2]
    for index, layer in enumerate(readout):
        scale = to_kj if index == len(readout) - 1 else 1.0
        out[f"readout.{2 * index}.weight"], out[f"readout.{2 * index}.bias"] = linear(layer, scale)
    types = int(rows.shape[0])
    out["type_energy"] = torch.zeros(types, dtype=torch.float64)
    out["molecule_energy"] = torch.zeros((), dtype=torch.float64)
    if not math.isfinite(float(sum(v.abs().sum() for v in out.values()))):
        raise ImportModelError(f"{source}: the SchNet holds non-finite weights")
    return out
