"""``gnnmd import``: a source model plus its topology in, an ordinary gnnmd checkpoint out."""

from __future__ import annotations

import copy
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from gnnmd.errors import ImportModelError
from gnnmd.graph import TERMINAL_SUFFIX
from gnnmd.interop import provenance, read_source_file, schnetpack, torchmd_priors, torchmdnet
from gnnmd.interop.psf import read_psf
from gnnmd.models import save_checkpoint
from gnnmd.nn.ensemble import ensemble_mean
from gnnmd.nn.potential import CGPotential
from gnnmd.runfolder import file_sha256
from gnnmd.topology import CGTopology


def import_torchmdnet(
    checkpoint: str | os.PathLike,
    topology: str | os.PathLike,
    output: str | os.PathLike | None = None,
    types: str | os.PathLike | None = None,
    priors: str | os.PathLike | None = None,
    terms: Sequence[str] | None = None,
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
    allow_pickle: bool = False,
) -> tuple[CGPotential, CGTopology]:
    """A TorchMD-Net graph-network checkpoint (and TorchMD priors) as a gnnmd model (float64).

    Args:
        checkpoint: the TorchMD-Net ``.ckpt`` file, or a ``.zip`` of them: an ensemble, imported as
            one model computing the members' mean energy (:mod:`gnnmd.nn.ensemble`).
        topology: a TorchMD CG PSF, or a PDB read with gnnmd's ``ca`` mapping.
        output: where to write the gnnmd checkpoint (None: do not write).
        types: TYPES.json, {PSF atom type: embedding index}; None: the TorchMD CG convention
            (PSF types ``CA`` + one-letter code, embeddings of :data:`torchmdnet.TORCHMD_CG_EMBEDDINGS`).
        priors: a TorchMD force-field YAML whose terms are added as priors.
        terms: TorchMD force terms to take from it (default: every term it has; ``lj`` as RepulsionCG).
        length_unit, energy_unit: the units the model and force field were made in.
        allow_pickle: unpickle a checkpoint that holds Python objects (says so on stderr).
    Returns:
        (model, the topology as gnnmd reads it).
    """
    checkpoint, topology = Path(checkpoint), Path(topology)
    type_map = torchmdnet.types_from_file(Path(types)) if types else torchmdnet.torchmd_cg_types()
    document = torchmd_priors.read_force_field(Path(priors)) if priors else None
    cg = _read_topology(topology, bool(types), torchmd_priors.masses(document) if document else {})
    members = _torchmdnet_members(checkpoint, allow_pickle)
    raw = members[0][1]
    prior_set, options = None, None
    if document is not None:
        cutoff_nm = _cutoff_nm(raw, checkpoint, length_unit)
        prior_set, options = _torchmd_prior_set(Path(priors), document, type_map, bool(types), terms,
                                                cutoff_nm, (length_unit, energy_unit))  # fmt: skip
    models = [
        torchmdnet.convert(
            raw_member, where, type_map, length_unit, energy_unit, copy.deepcopy(prior_set), options
        )  # fmt: skip
        for where, raw_member, _ in members
    ]
    args = raw["hyper_parameters"]
    source = _torchmdnet_provenance(checkpoint, args, length_unit, energy_unit, priors, options)
    if checkpoint.suffix == ".zip":
        # An ensemble (a zip of checkpoints, as TorchMD-Net saves one) predicts its members' mean energy.
        model = ensemble_mean(models, str(checkpoint))
        description = (f"the mean of a TorchMD-Net ensemble of {len(models)} {args.get('model')} models, "
                       f"imported from {checkpoint.name}")  # fmt: skip
        source["ensemble_members"] = [{"file": where.name, "sha256": digest} for where, _, digest in members]
    else:
        model = models[0]
        description = f"TorchMD-Net {args.get('model')} imported from {checkpoint.name}"
    model.pack([cg])  # every bead type and prior term of the topology is covered, or this raises
    # Masses travel with the model: TorchMD's PSF files leave them 0 (its force field holds them).
    masses = {bead: float(mass) for bead, mass in zip(cg.bead_types, cg.masses_amu, strict=True)}
    _record(model, checkpoint, description, source, output, bead_masses_amu=masses)
    return model, cg


def _torchmd_prior_set(
    path: Path, document: dict, type_map: dict, own_types: bool, terms: Sequence[str] | None,
    cutoff_nm: float, units: tuple[str, str],
) -> tuple:
    """The priors of a TorchMD force field (``terms``, default all of its terms) and the options
    the conversion needs: the terms taken, the repulsion's exclusions and the tables."""
    torchmd_type_of = {name: name for name in type_map} if own_types else _convention_torchmd_types()
    chosen = [t.lower() for t in terms] if terms is not None else torchmd_priors.default_terms(document)
    prior_set, tables, wanted, exclusions = torchmd_priors.build_priors(
        path, document, list(type_map), torchmd_type_of, chosen, cutoff_nm, *units
    )
    return prior_set, {"terms": wanted, "repulsion_exclusions": exclusions, "tables": tables}


def _torchmdnet_members(checkpoint: Path, allow_pickle: bool) -> list[tuple[Path, dict, str]]:
    """(where, checkpoint dict, SHA-256) of a ``.ckpt`` file, or of every ``.ckpt`` at the top of a
    ``.zip`` (TorchMD-Net's ensemble format), in name order."""
    if checkpoint.suffix != ".zip":
        raw = read_source_file(checkpoint, "torchmd-net", allow_pickle)
        return [(checkpoint, raw, file_sha256(checkpoint))]
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            names = sorted(n for n in archive.namelist() if n.endswith(".ckpt") and "/" not in n)
            if not names:
                raise ImportModelError(f"{checkpoint}: the zip holds no .ckpt file at its top level")
            with tempfile.TemporaryDirectory() as scratch:
                members = []
                for name in names:
                    path = Path(scratch) / name
                    path.write_bytes(archive.read(name))
                    raw = read_source_file(path, "torchmd-net", allow_pickle)
                    members.append((Path(f"{checkpoint}:{name}"), raw, file_sha256(path)))
    except (zipfile.BadZipFile, OSError) as error:
        raise ImportModelError(
            f"{checkpoint}: not a readable zip of TorchMD-Net checkpoints ({error})"
        ) from None
    return members


def _convention_torchmd_types() -> dict[str, str]:
    return {bead: psf for psf, bead in torchmdnet.TORCHMD_CG_PSF_TYPES.items()}


def _read_topology(path: Path, custom_types: bool, masses: dict[str, float]) -> CGTopology:
    if path.suffix.lower() == ".psf":
        return read_psf(path, _bead_type_function(path, custom_types), masses)
    if custom_types:
        raise ImportModelError(
            f"{path}: with --types the topology must be a PSF (its atom types are the map's keys); "
            "a PDB is read with gnnmd's 'ca' mapping and the TorchMD CG convention"
        )
    from gnnmd.systems import load_system

    return load_system(str(path), mapping="ca").topology


def _bead_type_function(path: Path, custom_types: bool):
    def bead_type(psf_type: str, residue: str) -> str:
        if custom_types:
            return psf_type
        if psf_type not in torchmdnet.TORCHMD_CG_PSF_TYPES:
            raise ImportModelError(
                f"{path}: PSF atom type {psf_type!r} (residue {residue}) is not one of the TorchMD CG "
                f"convention's {sorted(torchmdnet.TORCHMD_CG_PSF_TYPES)}; give --types TYPES.json"
            )
        return torchmdnet.TORCHMD_CG_PSF_TYPES[psf_type]

    return bead_type


def _cutoff_nm(raw, source: Path, length_unit: str) -> float:
    from gnnmd.units import length_to_nm

    try:
        return float(raw["hyper_parameters"]["cutoff_upper"]) * length_to_nm(length_unit)
    except (KeyError, TypeError, ValueError):
        raise ImportModelError(f"{source}: hyper_parameters has no 'cutoff_upper'") from None


def _torchmdnet_provenance(
    checkpoint: Path, args: dict, length_unit: str, energy_unit: str, priors, options
) -> dict:
    source = provenance(
        "torchmd-net", checkpoint, length_unit, energy_unit,
        model=args.get("model"), precision=args.get("precision"),
        max_num_neighbors=args.get("max_num_neighbors"),
    )  # fmt: skip
    if priors is not None:
        source["priors"] = provenance(
            "torchmd", priors, length_unit, energy_unit, terms=list(options["terms"])
        )
        source["priors"]["repulsion"] = "unshifted, within the network cutoff"
    return source


def _record(
    model: CGPotential,
    source_file: Path,
    description: str,
    source: dict,
    output: str | os.PathLike | None,
    **extra: object,
) -> None:
    """Give an imported model its metadata (trained, where it came from) and write it if asked."""
    model.metadata = {
        "name": source_file.stem,
        "trained": True,
        "description": description,
        "imported_from": source,
        **extra,
    }
    if output is not None:
        save_checkpoint(model, output, model.metadata)


def import_schnetpack(
    model_file: str | os.PathLike,
    output: str | os.PathLike | None = None,
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
    elements: Sequence[int] | None = None,
    allow_pickle: bool = False,
) -> CGPotential:
    """A SchNetPack SchNet ``NeuralNetworkPotential`` (saved with ``torch.save(model)``) as a gnnmd
    all-atom model (float64, element vocabulary). Unpickling the file needs SchNetPack installed and
    ``allow_pickle`` (a pickle can run code; the import command says so)."""
    model_file = Path(model_file)
    source = schnetpack.read_model(model_file, allow_pickle)
    model = schnetpack.convert(
        source, model_file, length_unit, energy_unit, list(elements) if elements else None
    )
    source = provenance("schnetpack", model_file, length_unit, energy_unit)
    _record(model, model_file, f"SchNetPack SchNet imported from {model_file.name}", source, output)
    return model


def import_mlcg(
    model_file: str | os.PathLike,
    output: str | os.PathLike | None = None,
    topology: str | os.PathLike | None = None,
    mapping: str = "5bead",
    types: str | os.PathLike | None = None,
    repulsion_pairs: str = "all",
    length_unit: str = "angstrom",
    energy_unit: str = "kcal/mol",
    special_terminal: bool | None = None,
) -> tuple[CGPotential, CGTopology | None]:
    """An mlcg CGSchNet model file (``torch.save(model)``) as a gnnmd model (float64).

    The file is read without mlcg and without running its code (see
    :mod:`gnnmd.interop.opaque_pickle`).

    Args:
        model_file: the mlcg model file.
        output: where to write the gnnmd checkpoint (None: do not write).
        topology: a PDB read with ``mapping``; every bead type and prior term it has must be
            covered (checked here rather than at the first simulation).
        mapping: gnnmd's ``ca`` or ``5bead`` mapping; picks the mlcg type convention
            (``CA_MAP`` or ``OPEPS_MAP``) unless ``types`` is given.
        types: TYPES.json {gnnmd bead type ("TYR.CA"): mlcg atom type}.
        repulsion_pairs: the repulsion's neighbour list (see :data:`mlcg_priors.REPULSION_PAIRS`).
        length_unit, energy_unit: the units the model was trained in.
        special_terminal: whether the model was trained with mlcg's ``special_terminal`` chain-end
            types; None: read from its priors (the convention), or from ``types`` (names ending in
            ``-terminal``).
    Returns:
        (model, the topology as gnnmd reads it, or None).
    """
    from gnnmd.interop import mlcg, mlcg_priors
    from gnnmd.interop.opaque_pickle import read_opaque

    model_file = Path(model_file)
    root = read_opaque(model_file, "mlcg")
    if types:
        type_map = torchmdnet.types_from_file(Path(types))
        named = mlcg.names_terminal_types(type_map)
        if special_terminal is not None and special_terminal != named:
            raise ImportModelError(
                f"{types}: special_terminal={special_terminal} but the type map "
                f"{'names' if named else 'has no'} chain-end types ending in {TERMINAL_SUFFIX!r}"
            )
        special_terminal = named
    else:
        schnet, priors = mlcg_priors.prior_parts(root, model_file)
        if special_terminal is None:
            special_terminal = mlcg.special_terminal_of(priors, model_file, mapping)
        type_map = mlcg.convention_types(mapping, special_terminal, mlcg.embedding_rows(schnet))
    model, described = mlcg.convert(root, model_file, type_map, length_unit, energy_unit, repulsion_pairs)
    cg = None
    if topology is not None:
        from gnnmd.systems import load_system

        cg = load_system(str(topology), mapping=mapping).topology
        model.pack([cg])  # every bead type and prior term of the topology is covered, or this raises
    source = provenance(
        "mlcg", model_file, length_unit, energy_unit, mapping=mapping,
        types=str(Path(types).resolve()) if types else f"mlcg convention for the {mapping} mapping",
        special_terminal=special_terminal, **described,
    )  # fmt: skip
    if model.config.use_priors:
        source["repulsion"] = "unshifted, within the network cutoff"
    _record(model, model_file, f"mlcg CGSchNet imported from {model_file.name}", source, output)
    return model, cg
