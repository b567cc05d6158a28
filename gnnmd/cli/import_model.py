"""``gnnmd import LIBRARY MODEL ... -o OUT.pt``: a model trained elsewhere as a gnnmd checkpoint."""

from __future__ import annotations

import argparse

from gnnmd.units import ENERGY_UNITS, LENGTH_UNITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    libraries = parser.add_subparsers(dest="library", required=True, metavar="LIBRARY")
    tmn = libraries.add_parser(
        "torchmd-net",
        help="a TorchMD-Net graph-network (SchNet) checkpoint, with TorchMD priors",
        description="Import a TorchMD-Net graph-network checkpoint (Lightning-style .ckpt).",
    )
    tmn.add_argument(
        "checkpoint", help="TorchMD-Net checkpoint (.ckpt), or a .zip of them (an ensemble: the mean energy)"
    )
    tmn.add_argument("--topology", required=True, help="TorchMD CG PSF, or a PDB (ca mapping)")
    tmn.add_argument(
        "--types",
        help="TYPES.json {PSF atom type: embedding index}; default: the TorchMD CG convention "
        "(PSF types CA + one-letter code: CAA 1, CAG 2, CAF 3, CAY 4, ... as torchmd-cg writes them)",
    )
    tmn.add_argument("--priors", help="TorchMD force-field YAML whose terms become the model's priors")
    tmn.add_argument(
        "--prior-terms",
        help="comma-separated TorchMD force terms to take from --priors (bonds, angles, dihedrals, "
        "repulsioncg); default: every term the file has, its lj section as RepulsionCG",
    )
    tmn.add_argument("--length-unit", default="angstrom", choices=LENGTH_UNITS, help="model length unit (Å)")
    tmn.add_argument("--energy-unit", default="kcal/mol", choices=ENERGY_UNITS, help="model energy unit")
    tmn.add_argument("-o", "--output", required=True, help="gnnmd checkpoint to write")
    spk = libraries.add_parser(
        "schnetpack",
        help="a SchNetPack SchNet NeuralNetworkPotential saved with torch.save(model)",
        description="Import a SchNetPack SchNet model file (unpickled: import only files you trust).",
    )
    spk.add_argument("model", help="SchNetPack model file (torch.save of the whole model)")
    spk.add_argument("--length-unit", default="angstrom", choices=LENGTH_UNITS, help="model length unit (Å)")
    spk.add_argument("--energy-unit", default="kcal/mol", choices=ENERGY_UNITS, help="model energy unit")
    spk.add_argument("--elements", help="comma-separated atomic numbers to keep (default: all)")
    spk.add_argument("-o", "--output", required=True, help="gnnmd checkpoint to write")
    _add_mlcg(libraries)


def _add_mlcg(libraries) -> None:
    from gnnmd.interop.mlcg_priors import REPULSION_PAIRS

    mlcg = libraries.add_parser(
        "mlcg",
        help="an mlcg CGSchNet model (SumOut of SchNet and priors) saved with torch.save(model)",
        description="Import an mlcg CGSchNet model file. The file is read without mlcg and without "
        "running its code: every class it names is read as a record.",
    )
    mlcg.add_argument("model", help="mlcg model file (torch.save of the whole model)")
    mlcg.add_argument("--topology", help="a PDB to check the model covers (read with --mapping)")
    mlcg.add_argument(
        "--mapping", default="5bead", choices=("5bead", "ca"),
        help="bead mapping: 5bead (N, CA, CB, C, O; mlcg's OPEPS_MAP types) or ca (mlcg's CA_MAP types)",
    )  # fmt: skip
    mlcg.add_argument("--types", help="TYPES.json {gnnmd bead type, e.g. TYR.CA: mlcg atom type}")
    mlcg.add_argument(
        "--special-terminal", choices=("yes", "no"),
        help="the model was trained with mlcg's special_terminal chain-end types (default: read from "
        "its priors, or from TYPES.json names ending in -terminal)",
    )  # fmt: skip
    mlcg.add_argument(
        "--repulsion-pairs", default="all", choices=sorted(REPULSION_PAIRS),
        help="the pairs the repulsion prior acted on: "
        + "; ".join(f"{name}: {what}" for name, what in REPULSION_PAIRS.items()),
    )  # fmt: skip
    mlcg.add_argument("--length-unit", default="angstrom", choices=LENGTH_UNITS, help="model length unit (Å)")
    mlcg.add_argument("--energy-unit", default="kcal/mol", choices=ENERGY_UNITS, help="model energy unit")
    mlcg.add_argument("-o", "--output", required=True, help="gnnmd checkpoint to write")


def run(args: argparse.Namespace) -> int:
    if args.library == "schnetpack":
        return _run_schnetpack(args)
    if args.library == "mlcg":
        return _run_mlcg(args)
    from gnnmd.interop.importing import import_torchmdnet

    terms = [t for t in args.prior_terms.split(",") if t] if args.prior_terms else None
    model, topology = import_torchmdnet(
        args.checkpoint, args.topology, args.output, types=args.types, priors=args.priors, terms=terms,
        length_unit=args.length_unit, energy_unit=args.energy_unit, allow_pickle=True,
    )  # fmt: skip
    config = model.config
    print(
        f"imported {args.checkpoint} -> {args.output}: TorchMD-Net graph-network, "
        f"{config.num_interactions} blocks x {config.hidden_channels} features, cutoff "
        f"{config.cutoff_nm:g} nm, {len(model.vocabulary)} bead types, priors: "
        f"{', '.join(config.prior_terms) if config.use_priors else 'none'}; checked on {topology.source} "
        f"({topology.n_beads} beads); units converted from {args.length_unit}, {args.energy_unit}"
    )
    return 0


def _run_schnetpack(args: argparse.Namespace) -> int:
    from gnnmd.interop.importing import import_schnetpack

    elements = [int(z) for z in args.elements.split(",") if z] if args.elements else None
    model = import_schnetpack(
        args.model, args.output, args.length_unit, args.energy_unit, elements, allow_pickle=True
    )
    config = model.config
    print(
        f"imported {args.model} -> {args.output}: SchNetPack SchNet, {config.num_interactions} blocks x "
        f"{config.hidden_channels} features, cutoff {config.cutoff_nm:g} nm, elements "
        f"{' '.join(model.vocabulary)}; units converted from {args.length_unit}, {args.energy_unit}"
    )
    return 0


def _run_mlcg(args: argparse.Namespace) -> int:
    from gnnmd.interop.importing import import_mlcg

    model, topology = import_mlcg(
        args.model, args.output, args.topology, args.mapping, args.types, args.repulsion_pairs,
        args.length_unit, args.energy_unit,
        special_terminal=None if args.special_terminal is None else args.special_terminal == "yes",
    )  # fmt: skip
    config = model.config
    checked = f"; checked on {topology.source} ({topology.n_beads} beads)" if topology is not None else ""
    print(
        f"imported {args.model} -> {args.output}: mlcg CGSchNet, {config.num_interactions} blocks x "
        f"{config.hidden_channels} features, cutoff {config.cutoff_nm:g} nm, {len(model.vocabulary)} bead "
        f"types{' (chain ends typed apart)' if config.terminal_types else ''}, priors: "
        f"{', '.join(config.prior_terms) if config.use_priors else 'none'}{checked}; "
        f"units converted from {args.length_unit}, {args.energy_unit}"
    )
    return 0
