"""``gnnmd validate MODEL``: simulate with the replica runner and compare with reference data.

    gnnmd validate ala2 --reference out/ala2-reference/ala2_reference.h5 --json out/ala2.json --plots out/

A model may name its default reference in its metadata (``reference_data``): ``cgnet-ala2``
is the shipped CGnet alanine-dipeptide data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from gnnmd.cli.options import add_fallback_option, add_threads_option
from gnnmd.kernels import AUTO, BACKENDS, choose_backend

SHIPPED_REFERENCES = ("cgnet-ala2",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="shipped model name or checkpoint path")
    parser.add_argument(
        "--reference", help="gnnmd dataset (.h5) or a shipped reference: " + ", ".join(SHIPPED_REFERENCES)
    )
    parser.add_argument("--replicas", type=int, default=128, help="replicas simulated per molecule (128)")
    parser.add_argument(
        "--steps", type=int, default=20000, help="steps per replica, equilibration included (20000)"
    )
    parser.add_argument("--equilibration-steps", type=int, default=2000, help="steps not analysed (2000)")
    parser.add_argument(
        "--record-every", type=int, default=50, help="steps between analysed frames of a replica (50)"
    )
    parser.add_argument("--dt-fs", type=float, default=2.0, help="time step in fs (2)")
    parser.add_argument("--temperature-k", type=float, default=300.0, help="temperature in K (300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--backend", default="reference", choices=(AUTO, *BACKENDS),
        help="kernel backend of the simulation and force check (default: reference; auto: the fastest "
        "accurate one that runs here; see docs/kernels.md)",
    )  # fmt: skip
    parser.add_argument(
        "--no-priors-only", action="store_true",
        help="skip the second simulation with the network switched off (report key priors_only)",
    )  # fmt: skip
    add_fallback_option(parser)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--plots", type=Path, help="write PNG figures into this folder")


def reference_path(args: argparse.Namespace, model, scratch: Path) -> Path:
    """The reference dataset: --reference, else the model's declared default."""
    name = args.reference or getattr(model, "metadata", {}).get("reference_data")
    if name is None:
        raise ValueError(f"model {args.model!r} names no default reference data: pass --reference DATA.h5")
    if name == "cgnet-ala2":
        from gnnmd.data.importers import import_cgnet_ala2

        return import_cgnet_ala2(scratch / "cgnet_ala2.h5")
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"--reference {name!r} is neither a file nor one of {SHIPPED_REFERENCES}")
    return path


def run(args: argparse.Namespace) -> int:
    from gnnmd.analysis.validate import ValidationSettings, validate
    from gnnmd.data.dataset import ForceDataset
    from gnnmd.engine import LangevinSettings
    from gnnmd.models import load_model
    from gnnmd.threads import apply_threads

    threads = apply_threads(args.threads)
    backend = choose_backend(args.backend, "cpu")
    model = load_model(args.model, backend=backend, allow_fallback=args.allow_fallback)
    settings = ValidationSettings(
        replicas=args.replicas, steps=args.steps, equilibration_steps=args.equilibration_steps,
        langevin=LangevinSettings(timestep_fs=args.dt_fs, temperature_k=args.temperature_k), seed=args.seed,
        record_every=args.record_every, priors_only=not args.no_priors_only,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        dataset = ForceDataset(reference_path(args, model, Path(scratch)))
        report = validate(model, dataset, settings, args.plots)
    report["model"] = args.model
    report.update(threads)
    for name, molecule in report["molecules"].items():
        _print_molecule(name, molecule)
    if not report["trained"]:
        print(f"note: model {args.model!r} is UNTRAINED")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _print_molecule(name: str, molecule: dict) -> None:
    """One molecule's report: simulated time, force errors (and gains over the priors), observables."""
    from gnnmd.analysis.protein import FOLDED_RMSD_NM

    rmse = molecule["force_rmse_kj_per_mol_nm"]
    print(f"{name}: {molecule['simulated_ns']:.2f} ns simulated; force RMSE {rmse:.2f} kJ/mol/nm")
    print(f"  on {molecule['force_frame_count']} frames: {molecule['force_frames']}")
    gain = molecule.get("priors_only", {}).get("force_gain")
    if gain is not None:
        print(
            f"  priors only: force RMSE {gain['force_rmse_priors_only_kj_per_mol_nm']:.2f}; the network "
            f"lowers the mean squared error by {gain['mse_gain_in_standard_errors']:.1f} standard errors"
        )
    torsion = molecule.get("priors_only", {}).get("torsion_gain")
    if torsion is not None:
        print(
            f"  torsional forces: RMSE {molecule['torsion_rmse_kj_per_mol_rad']:.2f} kJ/mol/rad, "
            f"priors only {torsion['torsion_rmse_priors_only_kj_per_mol_rad']:.2f}; gain "
            f"{torsion['mse_gain_in_standard_errors']:.1f} standard errors"
        )
    for replica, reason in molecule.get("failed_replicas", {}).items():
        print(f"  WARNING: replica {replica} failed and was dropped ({reason})", file=sys.stderr)
    if "folded_fraction" in molecule:
        folded = molecule["folded_fraction"]
        print(
            f"  folded (CA RMSD < {FOLDED_RMSD_NM} nm): model {folded['model']:.3f}, "
            f"reference {folded['reference']:.3f}"
        )
    _print_main_observable(molecule)
    _print_folding(molecule.get("folding"))
    for observable, value in sorted(molecule["js_divergence"].items(), key=lambda kv: -kv[1]):
        print(f"  JS divergence {value:.4f}  {observable}")


def _print_main_observable(molecule: dict) -> None:
    main = molecule.get("main_observable")
    if main is None:
        return
    line = f"  {main}: JS model {molecule['js_divergence'][main]:.4f}"
    if "priors_only" in molecule:
        line += f", priors only {molecule['priors_only']['js_divergence'][main]:.4f}"
    print(f"{line}, noise floor {molecule['noise_floor']:.4f}")
    sources = {"model": molecule["populations"]["model"], "reference": molecule["populations"]["reference"]}
    if "priors_only" in molecule:
        sources["priors only"] = molecule["priors_only"]["populations"]
    for label, states in sources.items():
        text = ", ".join(f"{state} {v['population']:.3f} ± {v['error']:.3f}" for state, v in states.items())
        print(f"    {label}: {text}")


def _print_folding(folding: dict | None) -> None:
    """Folded fraction per start set (strict definition) and transitions, for a protein."""
    if folding is None:
        return
    for label in ("from_folded_starts", "from_unfolded_starts"):
        entry = folding[label]
        if entry is not None and entry["folded_fraction"] is not None:
            text = f"{entry['folded_fraction']:.3f} ± {entry['error']:.3f} ({entry['replicas']} replicas)"
            print(f"    folded {label.replace('_', ' ')}: {text}")
    events = folding["transitions"]
    print(f"    transitions: {events['folding']} folding, {events['unfolding']} unfolding")
    if "note" in folding:
        print(f"    note: {folding['note']}")
