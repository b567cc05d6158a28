"""The mean of an ensemble of SchNet potentials, as one wider SchNet.

An ensemble's prediction is the mean of its members' energies (TorchMD-Net's ``Ensemble``).
For M members of one architecture that mean is itself a SchNet, M times as wide: member k
owns channel block k of every layer, and every layer between blocks is block-diagonal, so
the members' features never mix:

- embeddings, biases and filters: the members' side by side;
- the radial basis: the members' bases side by side (M·K functions; a trainable basis may
  differ between members), each member's first filter layer reading its own block;
- in2f, the second filter layer, f2out, dense, the neighbour embedding's combination and
  the readout's hidden layers: block-diagonal;
- the readout's last layer: the members' side by side, divided by M (the sum over members
  becomes their mean), its bias the mean of theirs; per-type and per-molecule energies too.

The result is an ordinary checkpoint that every backend runs; it costs what running the
members one after another costs. Priors are the ensemble's, once: members must share them.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor

from gnnmd.errors import ImportModelError
from gnnmd.nn.potential import CGPotential

#: Config fields that scale with the number of members; every other field must agree.
WIDTHS = ("hidden_channels", "num_filters", "num_rbf", "readout_widths")


def ensemble_mean(members: Sequence[CGPotential], source: str = "ensemble") -> CGPotential:
    """One model whose energy is the mean of the members' energies (float64, eval mode).

    Raises:
        ImportModelError: fewer than one member, or members that differ in anything but their
            weights (architecture, vocabulary, priors), naming ``source`` and the difference.
    """
    if not members:
        raise ImportModelError(f"{source}: an ensemble needs at least one member")
    first = members[0]
    _check_alike(members, source)
    count = len(members)
    config = first.config
    default = (config.hidden_channels // 2,) * (1 + config.readout_hidden_layers)
    widths = tuple(config.readout_widths) or default
    wide = dataclasses.replace(
        config,
        hidden_channels=count * config.hidden_channels,
        num_filters=count * config.num_filters,
        num_rbf=count * config.num_rbf,
        readout_widths=tuple(count * w for w in widths),
        readout_hidden_layers=0,
    )
    priors = first.priors if first.use_priors else None
    model = CGPotential(wide, list(first.vocabulary), priors).double()
    states = [{k: v.double() if v.is_floating_point() else v for k, v in m.network.state_dict().items()}
              for m in members]  # fmt: skip
    model.network.load_state_dict(_wide_state(states, list(model.network.state_dict()), count))
    return model.eval()


def _check_alike(members: Sequence[CGPotential], source: str) -> None:
    first = members[0]
    names = [f.name for f in dataclasses.fields(first.config) if f.name not in WIDTHS]
    fixed = {name: getattr(first.config, name) for name in names}
    for index, member in enumerate(members[1:], start=1):
        for name, value in fixed.items():
            if getattr(member.config, name) != value:
                raise ImportModelError(
                    f"{source}: member {index} has {name}={getattr(member.config, name)!r}, member 0 "
                    f"{value!r}; an ensemble's members must share their architecture"
                )
        for name in WIDTHS:
            if getattr(member.config, name) != getattr(first.config, name):
                raise ImportModelError(f"{source}: member {index} differs from member 0 in {name}")
        if list(member.vocabulary) != list(first.vocabulary):
            raise ImportModelError(f"{source}: member {index} has another bead-type vocabulary")
        if first.use_priors and not _same_state(first.priors.state_dict(), member.priors.state_dict()):
            raise ImportModelError(f"{source}: member {index} has other priors; members must share them")
    if first.config.chiral_features:
        raise ImportModelError(f"{source}: members with chiral input cannot be combined (not implemented)")


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _wide_state(states: list[dict[str, Tensor]], keys: list[str], count: int) -> dict[str, Tensor]:
    """The wide network's state dict from the members' (see the module docstring)."""
    layers = sorted({int(k.split(".")[1]) for k in keys if k.startswith("readout.") and k.endswith("weight")})
    last = f"readout.{layers[-1]}"
    out = {}
    for key in keys:
        parts = [state[key] for state in states]
        if key in ("type_energy", "molecule_energy") or key == f"{last}.bias":
            out[key] = torch.stack(parts).mean(0)
        elif key == f"{last}.weight":
            out[key] = torch.cat(parts, dim=1) / count
        elif key.endswith("embedding.weight"):
            out[key] = torch.cat(parts, dim=1)
        elif key.endswith("combine.weight"):
            out[key] = _block_combine(parts)
        elif key.endswith(".weight") and parts[0].dim() == 2:
            out[key] = torch.block_diag(*parts)
        elif parts[0].dim() == 1:  # biases, and the basis functions' centres and widths
            out[key] = torch.cat(parts)
        else:
            raise ImportModelError(f"ensemble: no rule for network parameter {key!r}")  # a new layer kind
    return out


def _block_combine(parts: list[Tensor]) -> Tensor:
    """The neighbour embedding's Linear(2H -> H) on [x, m] for M members: member k maps its blocks
    x_k and m_k to its output block."""
    rows, double = parts[0].shape
    width, count = double // 2, len(parts)
    wide = parts[0].new_zeros(count * rows, 2 * count * width)
    for k, weight in enumerate(parts):
        wide[k * rows : (k + 1) * rows, k * width : (k + 1) * width] = weight[:, :width]
        offset = count * width + k * width
        wide[k * rows : (k + 1) * rows, offset : offset + width] = weight[:, width:]
    return wide
