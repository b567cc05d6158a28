"""mlcg's priors as gnnmd prior tables.

mlcg stores each prior as dense tables indexed by atom-type tuples (zeros where its
statistics had no entry) plus ``allowed_interaction_keys``, the tuples it fitted. In the
source units (typically Å, kcal/mol), per term:

=====================  ==========================================  =====================================
mlcg class             energy                                      gnnmd table (nm, kJ/mol)
=====================  ==========================================  =====================================
``HarmonicBonds``      k (r - x₀)²                                 bonds: k' = 2k, r0 = x₀
``HarmonicAngles``     k (cos θ - x₀)²                             angles (cosine form): k' = 2k, cos_theta0
``Dihedral``           v₀ + Σₙ k1ₙ sin(nφ) + k2ₙ cos(nφ)           dihedrals: constant, sin / cos coefficients
``Repulsion``          (σ / r)⁶                                    repulsion: σ, ε = 1 energy unit, unshifted
=====================  ==========================================  =====================================

Which beads a prior acts on is not in the model file: mlcg keeps those lists with the data.
gnnmd's bonded terms are every bonded path of its topology (for the ``ca`` and ``5bead``
mappings the chains and paths mlcg's own ``build_cg_topology``/``get_n_paths`` give), and
the repulsion pairs are one of :data:`REPULSION_PAIRS`. A term tuple and its reverse share
parameters in gnnmd; mlcg's statistics store both orientations with equal values, and a
model whose orientations differ (or lack one) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from gnnmd.errors import ImportModelError
from gnnmd.interop.opaque_pickle import Opaque
from gnnmd.nn.priors import PriorSet
from gnnmd.nn.priors.base import canonical_tuple, tuple_keys

#: The repulsion's neighbour list: ``all`` is mlcg's ``Repulsion.neighbor_list`` ("fully
#: connected": every ordered pair, so each pair counts twice); ``nonbonded`` is
#: ``make_non_bonded_set`` without residue exclusion (pairs more than two bonds apart, once), and
#: ``nonbonded-residue`` with it (also no pair within one residue: for the 5bead mapping, N–O and
#: CB–O of each residue).
REPULSION_PAIRS = {
    "all": "every bead pair, both orders (mlcg's fully connected list)",
    "nonbonded": "pairs more than two bonds apart, once (mlcg's make_non_bonded_set)",
    "nonbonded-residue": "pairs more than two bonds apart and in different residues, once "
    "(make_non_bonded_set with residue_exclusion, its default)",
}

_WRAPPERS = ("mlcg.nn.gradients.GradientsOut", "mlcg.nn.gradients.EnergyOut")
_TERMS = {
    "mlcg.nn.prior.harmonic.HarmonicBonds": "bonds",
    "mlcg.nn.prior.harmonic.HarmonicAngles": "angles",
    "mlcg.nn.prior.fourier_series.Dihedral": "dihedrals",
    "mlcg.nn.prior.repulsion.Repulsion": "repulsion",
}
_ORDER = {"bonds": 2, "angles": 3, "dihedrals": 4, "repulsion": 2}


def _unwrap(node: Opaque) -> Opaque:
    while node.class_path in _WRAPPERS:
        node = node.module("model")
    return node


def prior_parts(root: object, source: Path) -> tuple[Opaque, dict[str, list[tuple[str, Opaque]]]]:
    """(the SchNet, gnnmd term -> [(the part's name in the SumOut, the prior)]) of an mlcg model."""
    if not isinstance(root, Opaque):
        raise ImportModelError(
            f"{source}: not a pickled mlcg model: the file holds a {type(root).__name__}, not an mlcg "
            "module (SumOut, GradientsOut or a SchNet saved with torch.save(model))"
        )
    top = _unwrap(root)
    if top.class_path == "mlcg.nn.gradients.SumOut":
        parts = top.module("models").modules()
    else:
        parts = {top.attribute("name", "model"): top}
    schnets, priors = [], {}
    for name, part in parts.items():
        inner = _unwrap(part)
        if inner.class_path.startswith("mlcg.nn.schnet."):
            schnets.append(inner)
        elif inner.class_path in _TERMS:
            priors.setdefault(_TERMS[inner.class_path], []).append((name, inner))
        else:
            raise ImportModelError(
                f"{source}: model part {name!r} is a {inner.class_path}, which gnnmd does not implement "
                f"(it imports a SchNet and the priors {sorted(set(_TERMS.values()))})"
            )
    if len(schnets) != 1:
        raise ImportModelError(f"{source}: expected one SchNet among the model's parts, found {len(schnets)}")
    return schnets[0], priors


def prior_atom_types(priors: Mapping[str, list[tuple[str, Opaque]]]) -> set[int]:
    """Every atom type in the fitted tuples (``allowed_interaction_keys``) of the priors."""
    return {
        int(t) for found in priors.values() for _, prior in found
        for key in prior.attribute("allowed_interaction_keys") or [] for t in key
    }  # fmt: skip


def build_priors(
    priors: Mapping[str, list[tuple[str, Opaque]]],
    source: Path,
    types: Mapping[str, int],
    cutoff_nm: float,
    to_nm: float,
    to_kj: float,
    repulsion_pairs: str,
) -> tuple[PriorSet, dict]:
    """The prior set of a model whose vocabulary is ``types`` (bead type -> mlcg atom type).

    Returns:
        (prior set, options: ``terms``, ``repulsion_exclusions``, float64 ``tables``, ``parts``).
    """
    atom_types = sorted(set(types.values()))
    prior_type_of = {atom_type: index for index, atom_type in enumerate(atom_types)}
    bead_to_prior = torch.tensor([prior_type_of[types[name]] for name in types])
    tables = {}
    for term in ("bonds", "angles", "dihedrals", "repulsion"):
        rows = _rows(priors.get(term, []), term, source, prior_type_of)
        tables[term] = _TABLES[term](rows, len(atom_types), to_nm, to_kj, repulsion_pairs)
    prior_set = PriorSet([f"mlcg type {t}" for t in atom_types], bead_to_prior, tables, cutoff_nm)
    nonbonded = repulsion_pairs.startswith("nonbonded") and "repulsion" in priors
    exclusions = (1, 2) if nonbonded else ()
    terms = [term for term in ("bonds", "angles", "dihedrals", "repulsion") if term in priors]
    parts = {term: [name for name, _ in found] for term, found in priors.items()}
    residue_exclusion = nonbonded and repulsion_pairs == "nonbonded-residue"
    return prior_set, {"terms": terms, "repulsion_exclusions": exclusions, "tables": tables, "parts": parts,
                       "residue_exclusion": residue_exclusion}  # fmt: skip


def _rows(
    found: list[tuple[str, Opaque]], term: str, source: Path, prior_type_of: Mapping[int, int]
) -> list[tuple[tuple[int, ...], dict[str, torch.Tensor]]]:
    """(canonical prior-type tuple, parameters) for every fitted tuple the vocabulary can form."""
    rows: dict[tuple[int, ...], tuple[str, dict[str, torch.Tensor]]] = {}
    for name, prior in found:
        keys = [tuple(int(t) for t in key) for key in prior.attribute("allowed_interaction_keys") or []]
        if any(len(key) != _ORDER[term] for key in keys):
            raise ImportModelError(f"{source}: prior {name!r} lists type tuples of other than {_ORDER[term]}")
        tensors = prior.tensors()
        listed = set(keys)
        for key in keys:
            if any(t not in prior_type_of for t in key):
                continue  # a tuple of atom types no bead of this vocabulary has
            values = _values(term, tensors, key, prior, source)
            flipped = key[::-1]
            if flipped not in listed or not _equal(values, _values(term, tensors, flipped, prior, source)):
                raise ImportModelError(
                    f"{source}: prior {name!r} gives types {key} parameters that its reverse {flipped} "
                    "does not share; mlcg applies them in one orientation, gnnmd's terms are symmetric"
                )
            canonical = canonical_tuple(tuple(prior_type_of[t] for t in key))
            if canonical in rows and rows[canonical][0] != name:
                raise ImportModelError(
                    f"{source}: priors {rows[canonical][0]!r} and {name!r} both give {term} parameters "
                    f"for types {key}"
                )
            rows[canonical] = (name, values)
    return sorted((key, values) for key, (_, values) in rows.items())


def _values(
    term: str, tensors: Mapping[str, torch.Tensor], key: tuple[int, ...], prior: Opaque, source: Path
):
    try:
        if term == "dihedrals":
            return {
                "k1s": tensors["k1s"][(slice(None), *key)].to(torch.float64),
                "k2s": tensors["k2s"][(slice(None), *key)].to(torch.float64),
                "v_0": tensors["v_0"][key].to(torch.float64),
            }
        names = ("sigma",) if term == "repulsion" else ("x_0", "k")
        return {n: tensors[n][key].to(torch.float64) for n in names}
    except (KeyError, IndexError) as error:
        raise ImportModelError(
            f"{source}: prior {prior.class_name} has no parameter table entry for {key} ({error})"
        ) from None


def _equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


def _keys(rows: list, count: int) -> torch.Tensor:
    if not rows:
        return torch.zeros(0, dtype=torch.int64)
    return tuple_keys(torch.tensor([key for key, _ in rows], dtype=torch.int64), count)


def _column(rows: list, name: str, scale: float) -> torch.Tensor:
    return torch.tensor([float(values[name]) * scale for _, values in rows], dtype=torch.float64)


def _bonds(rows: list, count: int, to_nm: float, to_kj: float, _: str) -> dict[str, torch.Tensor]:
    # mlcg's k (r - x₀)² is gnnmd's ½ k' (r - r₀)² with k' = 2k.
    return {"keys": _keys(rows, count), "k": _column(rows, "k", 2.0 * to_kj / to_nm**2),
            "r0": _column(rows, "x_0", to_nm)}  # fmt: skip


def _angles(rows: list, count: int, to_nm: float, to_kj: float, _: str) -> dict[str, torch.Tensor]:
    return {"keys": _keys(rows, count), "k": _column(rows, "k", 2.0 * to_kj),
            "cos_theta0": _column(rows, "x_0", 1.0)}  # fmt: skip


def _dihedrals(rows: list, count: int, to_nm: float, to_kj: float, _: str) -> dict[str, torch.Tensor]:
    degrees = rows[0][1]["k1s"].shape[0] if rows else 1
    sin = torch.stack([values["k1s"] for _, values in rows]) if rows else torch.zeros(0, degrees)
    cos = torch.stack([values["k2s"] for _, values in rows]) if rows else torch.zeros(0, degrees)
    return {"keys": _keys(rows, count), "cos_coefficients": cos.to(torch.float64) * to_kj,
            "sin_coefficients": sin.to(torch.float64) * to_kj,
            "constant": _column(rows, "v_0", to_kj)}  # fmt: skip


def _repulsion(rows: list, count: int, to_nm: float, to_kj: float, pairs: str) -> dict[str, torch.Tensor]:
    # (σ/r)⁶ in one source energy unit; the fully connected list holds each pair twice.
    epsilon = to_kj * (2.0 if pairs == "all" else 1.0)
    return {"keys": _keys(rows, count), "sigma": _column(rows, "sigma", to_nm),
            "epsilon": torch.full((len(rows),), epsilon, dtype=torch.float64)}  # fmt: skip


_TABLES = {"bonds": _bonds, "angles": _angles, "dihedrals": _dihedrals, "repulsion": _repulsion}
