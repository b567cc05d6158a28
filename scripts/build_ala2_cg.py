"""Train, validate and ship the ``ala2-cg`` model (CGnet alanine dipeptide, 5 beads).

    python scripts/build_ala2_cg.py [--work out/ala2-cg]

Steps (each also a CLI command): import the shipped CGnet data
(`gnnmd data import-cgnet`), fit priors by Boltzmann inversion and force-match the
network (`gnnmd train --model-config scripts/ala2_cg_config.json --epochs 40
--batch-size 128`), then copy the best checkpoint to gnnmd/pretrained/ala2-cg.pt
with its default reference set, and validate it (`gnnmd validate ala2-cg`).
With --baseline, the same priors with the network's output switched off are
validated with the same settings, for a side-by-side comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from gnnmd.cli import main as gnnmd
from gnnmd.models import PRETRAINED_DIR, load_model, save_checkpoint
from gnnmd.nn.potential import priors_only

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "ala2-cg")
    parser.add_argument("--baseline", action="store_true", help="also validate the priors alone")
    parser.add_argument("--skip-training", action="store_true", help="reuse the shipped ala2-cg.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)  # reproducible reductions; the model is tiny
    data = args.work / "cgnet_ala2.h5"
    args.work.mkdir(parents=True, exist_ok=True)
    if not data.is_file():
        gnnmd(["data", "import-cgnet", "-o", str(data)])
    if not args.skip_training:
        ship(train_model(data, args.work))
    summaries = {"ala2-cg": validate("ala2-cg", args.work / "validation.json", args.work / "plots")}
    if args.baseline:
        summaries["priors only"] = validate(
            str(priors_only_file(args.work)), args.work / "baseline.json", args.work / "plots_baseline"
        )
    print(json.dumps(summaries, indent=1))


def train_model(data: Path, work: Path):
    train = ["train", "--data", str(data), "-o", str(work / "train"),
             "--model-config", str(REPO / "scripts" / "ala2_cg_config.json"),
             "--epochs", "40", "--batch-size", "128", "--seed", "0"]  # fmt: skip
    if gnnmd(train) != 0:
        raise SystemExit("training failed")
    return load_model(work / "train" / "best.pt")


def ship(model) -> None:
    """Write ``model`` as the shipped ala2-cg, naming its default reference data."""
    metadata = dict(model.metadata)
    metadata.update(
        name="ala2-cg",
        description="CGnet alanine dipeptide, 5 beads; priors by Boltzmann inversion, network force-matched",
        reference_data="cgnet-ala2",
        data_provenance="coarse-graining/cgnet @a3e0e8d examples/data (BSD-3-Clause), 10,000 frames, 300 K",
        built_by="scripts/build_ala2_cg.py",
    )
    metadata["training"]["dataset"] = "cgnet_ala2.h5"  # the file `gnnmd validate` imports by default
    save_checkpoint(model, PRETRAINED_DIR / "ala2-cg.pt", metadata)
    # The continuity tests compare every shipped model with recorded values: record the new one.
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_shipped_models.py"), "--record"], check=True
    )


def priors_only_file(work: Path) -> Path:
    """ala2-cg with the network's energy switched off (last layer zero): the priors alone."""
    model = priors_only(load_model("ala2-cg"))
    metadata = dict(model.metadata, trained=False, description="ala2-cg priors only (network output zeroed)")
    return save_checkpoint(model, work / "priors_only.pt", metadata)


def validate(model: str, report: Path, plots: Path) -> dict:
    gnnmd(["validate", model, "--replicas", "128", "--steps", "10000", "--equilibration-steps", "1000",
           "--json", str(report), "--plots", str(plots)])  # fmt: skip
    summary = json.loads(report.read_text())["molecules"]["ala2"]
    return {"force_rmse": summary["force_rmse_kj_per_mol_nm"], "js": summary["js_divergence"]}


if __name__ == "__main__":
    main()
