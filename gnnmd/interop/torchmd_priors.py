"""TorchMD force-field YAML priors as gnnmd prior tables (kJ/mol, nm, rad).

TorchMD's terms, keyed by atom type (``X`` is a wildcard; the entry with the fewest
wildcards wins, in either orientation), in Å and kcal/mol::

    bonds        k0 (r - req)²                      → gnnmd ½ k (r - r₀)², k = 2 k0
    angles       k0 (θ - θ0)², θ0 in degrees         → ½ k (θ - θ₀)², k = 2 k0
    dihedrals    Σ phi_k (1 + cos(per φ - phase))   → c + Σₙ aₙ cos nφ + bₙ sin nφ
    lj           RepulsionCG: 4 ε σ⁶ / r⁶ with σ = (σ_i + σ_j)/2, ε = √(ε_i ε_j), unshifted

The repulsion leaves out the bonded pairs of the terms in use (TorchMD's default
exclusions: bonds, angles, 1-4), and applies within the model's cutoff (TorchMD applies
it within its run's ``--cutoff``; pass the same value to compare).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from gnnmd.errors import ImportModelError
from gnnmd.nn.priors import PriorSet
from gnnmd.nn.priors.base import canonical_tuple
from gnnmd.units import energy_to_kj_per_mol, length_to_nm

#: TorchMD force terms and the gnnmd prior term each becomes.
FORCE_TERMS = {"bonds": "bonds", "angles": "angles", "dihedrals": "dihedrals", "repulsioncg": "repulsion"}
_SECTIONS = {"bonds": "bonds", "angles": "angles", "dihedrals": "dihedrals", "repulsion": "lj"}
#: Prior type of bead types the force field does not list: no parameters, refused if used.
UNLISTED = "<none>"


def read_force_field(path: Path) -> dict:
    """The YAML document; errors name the file."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ImportModelError(f"{path}: not a readable TorchMD force-field YAML ({error})") from None
    if not isinstance(document, dict) or "atomtypes" not in document:
        raise ImportModelError(f"{path}: a TorchMD force field needs an 'atomtypes' list")
    return document


def default_terms(document: Mapping[str, Any]) -> list[str]:
    """The TorchMD force terms a force field provides: ``lj`` is read as RepulsionCG."""
    present = {"bonds": "bonds", "angles": "angles", "dihedrals": "dihedrals", "lj": "repulsioncg"}
    return [term for section, term in present.items() if document.get(section)]


def build_priors(
    path: Path,
    document: Mapping[str, Any],
    bead_types: Sequence[str],
    torchmd_type_of: Mapping[str, str],
    terms: Sequence[str],
    cutoff_nm: float,
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
) -> tuple[PriorSet, dict[str, torch.Tensor], list[str], tuple[int, ...]]:
    """The prior set of a model whose vocabulary is ``bead_types``.

    Returns:
        (prior set, its float64 tables (for ``PriorSet.set_values``), gnnmd prior terms, repulsion
        exclusions).
    """
    unknown = sorted(set(terms) - set(FORCE_TERMS))
    if unknown:
        raise ImportModelError(
            f"{path}: force terms {unknown} are not supported; gnnmd has {sorted(FORCE_TERMS)}"
        )
    prior_types = [str(t) for t in document["atomtypes"]] + [UNLISTED]
    index = {name: i for i, name in enumerate(prior_types)}
    bead_to_prior = torch.tensor(
        [index.get(torchmd_type_of.get(t, ""), len(prior_types) - 1) for t in bead_types]
    )
    to_nm, to_kj = length_to_nm(length_unit), energy_to_kj_per_mol(energy_unit)
    wanted = [FORCE_TERMS[t] for t in terms]
    tables = {}
    for term in ("bonds", "angles", "dihedrals", "repulsion"):
        section = document.get(_SECTIONS[term]) or {}
        if term in wanted and not section:
            raise ImportModelError(
                f"{path}: force term {term} is requested but section {_SECTIONS[term]!r} is empty"
            )
        tables[term] = _TABLES[term](path, section if term in wanted else {}, prior_types, to_nm, to_kj)
    priors = PriorSet(prior_types, bead_to_prior, tables, cutoff_nm)
    # TorchMD excludes from the repulsion the pairs its bonded terms list: bonds 1, angles 2, dihedrals 3.
    exclusions = tuple(
        order for order, term in ((1, "bonds"), (2, "angles"), (3, "dihedrals")) if term in wanted
    )
    return priors, tables, wanted, exclusions


def _resolve(path: Path, section: Mapping, order: int, prior_types: list[str], label: str) -> list:
    """(canonical prior-type tuple, the YAML entry TorchMD would pick for it), sorted by tuple.

    Entries with wildcards are expanded over the listed types; fewer wildcards win. Two
    entries with as many wildcards that give one tuple different parameters (a term whose
    parameters depend on its orientation) are refused: gnnmd's terms share parameters
    between a tuple and its reverse.
    """
    listed = prior_types[:-1]
    chosen: dict[tuple[int, ...], tuple[int, Any, str]] = {}
    for raw, params in section.items():
        names = _tuple_names(raw, order, path, label)
        wildcards = sum(name == "X" for name in names)
        options = [listed if name == "X" else [name] for name in names]
        for combo in itertools.product(*options):
            if any(name not in prior_types for name in combo):
                raise ImportModelError(f"{path}: {label} entry {raw!r} uses a type not in 'atomtypes'")
            key = canonical_tuple(tuple(prior_types.index(n) for n in combo))
            previous = chosen.get(key)
            if previous is None or wildcards < previous[0]:
                chosen[key] = (wildcards, params, str(raw))
            elif wildcards == previous[0] and previous[1] != params:
                raise ImportModelError(
                    f"{path}: {label} entries {previous[2]!r} and {raw!r} give one type tuple different "
                    "parameters by orientation; gnnmd's terms are symmetric under reversal"
                )
    return sorted((key, params) for key, (_, params, _) in chosen.items())


def _tuple_names(raw: Any, order: int, path: Path, label: str) -> tuple[str, ...]:
    text = str(raw).strip()
    names = tuple(part.strip() for part in text.strip("()").split(",")) if order > 1 else (text,)
    if len(names) != order:
        raise ImportModelError(f"{path}: {label} entry {raw!r} should name {order} atom types")
    return names


def _keys(keys: list[tuple[int, ...]], count: int) -> torch.Tensor:
    encoded = [sum(t * count ** (len(k) - 1 - c) for c, t in enumerate(k)) for k in keys]
    return torch.tensor(encoded, dtype=torch.int64)


def _field(path: Path, params: Any, name: str, label: str, key: Any) -> float:
    try:
        value = float(params[name])
    except (KeyError, TypeError, ValueError):
        raise ImportModelError(f"{path}: {label} entry {key} needs a number {name!r}") from None
    if not math.isfinite(value):
        raise ImportModelError(f"{path}: {label} entry {key} has {name}={value}")
    return value


def _bonds(path: Path, section: Mapping, types: list[str], to_nm: float, to_kj: float) -> dict:
    rows = _resolve(path, section, 2, types, "bonds")
    k = [2.0 * _field(path, p, "k0", "bonds", key) * to_kj / to_nm**2 for key, p in rows]
    r0 = [_field(path, p, "req", "bonds", key) * to_nm for key, p in rows]
    return _table(rows, types, k=k, r0=r0)


def _angles(path: Path, section: Mapping, types: list[str], to_nm: float, to_kj: float) -> dict:
    rows = _resolve(path, section, 3, types, "angles")
    k = [2.0 * _field(path, p, "k0", "angles", key) * to_kj for key, p in rows]
    theta0 = [math.radians(_field(path, p, "theta0", "angles", key)) for key, p in rows]
    return _table(rows, types, k=k, theta0=theta0)


def _dihedrals(path: Path, section: Mapping, types: list[str], to_nm: float, to_kj: float) -> dict:
    rows = _resolve(path, section, 4, types, "dihedrals")
    series = [_dihedral_terms(path, key, p) for key, p in rows]
    harmonics = max([1] + [int(n) for terms in series for _, _, n in terms])
    cos = torch.zeros(len(rows), harmonics, dtype=torch.float64)
    sin = torch.zeros(len(rows), harmonics, dtype=torch.float64)
    constant = torch.zeros(len(rows), dtype=torch.float64)
    for row, terms in enumerate(series):
        for k, phase, n in terms:
            # k (1 + cos(nφ - φ₀)) = k + k cos φ₀ cos nφ + k sin φ₀ sin nφ
            constant[row] += k * to_kj
            cos[row, n - 1] += k * to_kj * math.cos(phase)
            sin[row, n - 1] += k * to_kj * math.sin(phase)
    table = _table(rows, types)
    table.update(cos_coefficients=cos, sin_coefficients=sin, constant=constant)
    return table


def _dihedral_terms(path: Path, key: Any, params: Any) -> list[tuple[float, float, int]]:
    terms = params.get("terms") if isinstance(params, Mapping) else None
    if not isinstance(terms, list) or not terms:
        raise ImportModelError(f"{path}: dihedrals entry {key} needs a list 'terms'")
    out = []
    for term in terms:
        k = _field(path, term, "phi_k", "dihedrals", key)
        phase = math.radians(_field(path, term, "phase", "dihedrals", key))
        per = _field(path, term, "per", "dihedrals", key)
        if per <= 0 or per != int(per):
            raise ImportModelError(
                f"{path}: dihedrals entry {key} has per={per}: gnnmd implements periodic torsions "
                "(per a positive integer), not TorchMD's harmonic (CHARMM-style) form"
            )
        out.append((k, phase, int(per)))
    return out


def _repulsion(path: Path, section: Mapping, types: list[str], to_nm: float, to_kj: float) -> dict:
    listed = types[:-1]
    per_type = {}
    for name, params in section.items():
        sigma = _field(path, params, "sigma", "lj", name)
        epsilon = _field(path, params, "epsilon", "lj", name)
        if epsilon < 0 or sigma <= 0:
            raise ImportModelError(f"{path}: lj entry {name} has sigma={sigma}, epsilon={epsilon}")
        per_type[str(name)] = (sigma, epsilon)
    rows = []
    for a, b in itertools.combinations_with_replacement(range(len(listed)), 2):
        if listed[a] in per_type and listed[b] in per_type:
            (sa, ea), (sb, eb) = per_type[listed[a]], per_type[listed[b]]
            rows.append(((a, b), (0.5 * (sa + sb) * to_nm, 4.0 * math.sqrt(ea * eb) * to_kj)))
    return _table(rows, types, sigma=[r[1][0] for r in rows], epsilon=[r[1][1] for r in rows])


def _table(rows: list, types: list[str], **columns: list[float]) -> dict[str, torch.Tensor]:
    table = {"keys": _keys([key for key, _ in rows], len(types))}
    table.update({name: torch.tensor(values, dtype=torch.float64) for name, values in columns.items()})
    return table


_TABLES = {"bonds": _bonds, "angles": _angles, "dihedrals": _dihedrals, "repulsion": _repulsion}


def masses(document: Mapping[str, Any]) -> dict[str, float]:
    """Per atom type mass in amu, where the force field lists them (TorchMD reads masses there)."""
    return {str(k): float(v) for k, v in (document.get("masses") or {}).items()}
