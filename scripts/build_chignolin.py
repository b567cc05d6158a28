"""Generate data for, train, validate and ship the ``chignolin`` model (CLN025, 5-bead map).

    python scripts/build_chignolin.py [--work out/chignolin-allatom] [--ns 5] [--epochs 30]
    python scripts/build_chignolin.py --skip-data      # train on what the data file holds now

Steps (each a CLI command):

1. ``gnnmd data allatom chignolin --ns NS --temperature-k 340 -o WORK/chignolin-340K.h5``:
   amber14 + GBn2 implicit solvent on OpenMM's CPU platform, one frame per ps,
   mapped to 49 beads with the constraint-aware force map (docs/training.md).
   The file is resumable: an interrupted run continues where it stopped.
2. ``gnnmd train --model-config default --temperature-k 340``: priors by Boltzmann
   inversion, then delta-force matching of the ``default`` network (64 features,
   2 blocks, 1.2 nm); 10% of the frames held out.
3. ship the best checkpoint as gnnmd/shipped/models/chignolin.pt (and re-record the
   continuity values), then ``gnnmd validate chignolin --reference DATA``:
   CA RMSD, native contacts Q, the RMSD–Q free-energy surface, folded fraction,
   all bonded distributions, held-out force error.
4. the baseline: the same validation of the priors alone (the trained model with
   its network's output set to zero), so the network's share of the agreement
   is measured rather than assumed.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import torch

from gnnmd.cli import main as gnnmd
from gnnmd.data.dataset import ForceDataset
from gnnmd.models import PRETRAINED_DIR, load_model, save_checkpoint
from gnnmd.nn.potential import CGPotential

REPO = Path(__file__).resolve().parents[1]
TEMPERATURE_K = 340.0  # near CLN025's melting temperature: folded and unfolded both visited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "chignolin-allatom")
    parser.add_argument("--ns", type=float, default=5.0, help="all-atom ns to record (default 5)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip-data", action="store_true", help="train on the data file as it is")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training (default 2)")
    parser.add_argument(
        "--no-ship", action="store_true", help="train and validate a checkpoint; ship nothing"
    )
    parser.add_argument(
        "--validate-only", action="store_true", help="validate the trained checkpoint and its priors alone"
    )
    args = parser.parse_args(argv)
    data = args.work / "chignolin-340K.h5"
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.skip_data:
        run(["data", "allatom", "chignolin", "--ns", str(args.ns), "--temperature-k", str(TEMPERATURE_K),
             "--seed", "7", "-o", str(data)])  # fmt: skip
    frames = len(ForceDataset(data))
    torch.set_num_threads(args.threads)
    trained = args.work / "train" / "best.pt"
    if not args.validate_only:
        run(["train", "--data", str(data), "-o", str(args.work / "train"), "--model-config", "default",
             "--temperature-k", str(TEMPERATURE_K), "--epochs", str(args.epochs), "--batch-size", "32",
             "--seed", "0"])  # fmt: skip
    model = load_model(trained)
    name = str(trained) if args.no_ship or args.validate_only else "chignolin"
    if not (args.no_ship or args.validate_only):
        ship(model, frames)
    baseline = args.work / "priors_only.pt"
    save_checkpoint(priors_only(model), baseline, {**model.metadata, "trained": False, "name": "priors-only"})
    for label, checkpoint in (("", name), ("_priors_only", str(baseline))):
        report = args.work / f"validation{label}.json"
        run(["validate", checkpoint, "--reference", str(data), "--backend", "tabulated", "--replicas", "64",
             "--steps", "10000", "--equilibration-steps", "1000", "--dt-fs", "2",
             "--temperature-k", str(TEMPERATURE_K), "--json", str(report),
             "--plots", str(args.work / f"plots{label}")])  # fmt: skip
    for label in ("", "_priors_only"):
        summary = json.loads((args.work / f"validation{label}.json").read_text())["molecules"]["chignolin"]
        keys = ("rmsd_native", "native_contacts_q", "rmsd_q")
        scores = {key: summary["js_divergence"][key] for key in keys}
        print(label or "model", json.dumps(scores), "folded", summary.get("folded_fraction"))
    return 0


def priors_only(model: CGPotential) -> CGPotential:
    """A copy of ``model`` whose network contributes exactly zero energy: its priors alone."""
    baseline = copy.deepcopy(model)
    with torch.no_grad():
        baseline.network.readout[-1].weight.zero_()
        baseline.network.readout[-1].bias.zero_()
        baseline.network.type_energy.zero_()
    return baseline


def run(arguments: list[str]) -> None:
    if gnnmd(arguments) != 0:
        raise SystemExit(f"gnnmd {' '.join(arguments)} failed")


GOOD_FOR = (
    "CLN025 dynamics in its native basin at 300-340 K (holds the hairpin); not its folding "
    "equilibrium: replicas keep the state they start in (benchmarks/RESULTS.md)"
)


def ship(model, frames: int) -> None:
    """Write ``model`` as the shipped chignolin model and record its continuity values."""
    metadata = dict(model.metadata)
    metadata.update(
        name="chignolin",
        description="CLN025 (5-bead map), priors by Boltzmann inversion, network force-matched",
        good_for=GOOD_FOR,
        data_provenance=(
            f"generated by `gnnmd data allatom chignolin --temperature-k {TEMPERATURE_K:g}` "
            f"(amber14 + GBn2, OpenMM CPU, 1 frame/ps): {frames} frames from PDB 5AWL"
        ),
        built_by="scripts/build_chignolin.py",
    )
    save_checkpoint(model, PRETRAINED_DIR / "chignolin.pt", metadata)
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_shipped_models.py"), "--record"], check=True
    )


if __name__ == "__main__":
    raise SystemExit(main())
