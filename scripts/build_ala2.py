"""Train, choose, validate and ship the ``ala2`` model (alanine dipeptide, 5 backbone beads).

    python scripts/build_ala2.py [--work out/ala2] [--epochs 30] [--processes 2] [--no-ship]

Data: the reference of `scripts/build_reference.py ala2` (42 independent 1 ns amber14/GBn2
runs, 205,800 frames, "groups" force map; run that script first, about half an hour). The
candidates marked in CANDIDATE_DATA also train on runs biased along φ by metadynamics (their
forces without the bias; never held out, histogrammed or validated against), made by

    python scripts/torsion_free_energy.py reference --runs 4 --ns 6 --seed 11 \
        -o out/metad/ala2_reference_6ns.npz --dataset out/metad/ala2_biased_6ns.h5
    python scripts/torsion_free_energy.py training-data --reference out/ala2-reference/ala2_reference.h5 \
        --biased out/metad/ala2_biased_6ns.h5 -o out/metad/ala2_training.h5

Each candidate of CANDIDATES (network size, with or without chiral input) is force-matched
by `gnnmd train --select-by free_energy`: whole trajectories held out, every epoch scored by
the JS divergence of φ/ψ from short simulations to the held-out frames, the best-scoring
epoch kept. The candidate whose kept epoch scores lowest is the model: epochs and model
size are both picked on the held-out free-energy measure. It is validated with
`gnnmd validate` (JS to the reference, its priors alone, the reference's noise floor, state
populations with errors) and shipped as gnnmd/shipped/models/ala2.pt with its report in
benchmarks/ (ala2_validation.json, ala2_validation.png).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "out" / "ala2-reference" / "ala2_reference.h5"
BASE = {"num_rbf": 32, "rbf": "gaussian", "cutoff_nm": 1.0, "activation": "tanh", "exclusion_order": 2,
        "use_priors": True}  # fmt: skip
CHIRAL = {"num_interactions": 2, "chiral_features": True}
CANDIDATES = {
    "w64-achiral": {"hidden_channels": 64, "num_filters": 64, "num_interactions": 2},
    "w64-chiral": {"hidden_channels": 64, "num_filters": 64, **CHIRAL},
    "w32-chiral": {"hidden_channels": 32, "num_filters": 32, **CHIRAL},
    "w128-chiral": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
    "w64-chiral-averaged": {"hidden_channels": 64, "num_filters": 64, **CHIRAL},
    "w64-chiral-cosine": {"hidden_channels": 64, "num_filters": 64, **CHIRAL},
    "w128-chiral-cosine": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
    "w128-chiral-ibi": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
    "w128-chiral-torsion100": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
    "w128-chiral-torsion1000": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
    "w128-chiral-torsion100-metad": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
    "w128-chiral-torsion1000-metad": {"hidden_channels": 128, "num_filters": 128, **CHIRAL},
}
#: Candidates trained on more than DATA: the reference plus frames biased along φ, which cover the
#: φ barrier and α_L where the reference has almost none (see the module docstring).
CANDIDATE_DATA = {
    name: REPO / "out" / "metad" / "ala2_training.h5"
    for name in ("w128-chiral-torsion100-metad", "w128-chiral-torsion1000-metad")
}
#: A rate that decays to 1e-5 along a half cosine, the weights averaged over the last ~1000 steps.
COSINE = ["--lr-schedule", "cosine", "--final-learning-rate", "1e-5", "--weight-average-decay", "0.999",
          "--patience", "100"]  # fmt: skip
#: Training options of a candidate besides TRAINING.
EXTRA_TRAINING = {
    "w64-chiral-averaged": ["--weight-average-decay", "0.999", "--patience", "100"],
    "w64-chiral-cosine": COSINE,
    "w128-chiral-cosine": COSINE,
    # The same on dihedral priors refined by iterative Boltzmann inversion (the priors alone then
    # put α_R where the data have it).
    "w128-chiral-ibi": [*COSINE, "--refine-dihedral-priors", "2"],
    # The same with the generalized forces along φ and ψ in the loss (gnnmd.torsions): the
    # Cartesian loss lets the stiff priors' errors pull the φ/ψ free energy off
    # (benchmarks/dihedral_map_fit.py); weights 100 and 1000 (kJ/mol/nm)² per (kJ/mol/rad)².
    "w128-chiral-torsion100": [*COSINE, "--torsion-weight", "100"],
    "w128-chiral-torsion1000": [*COSINE, "--torsion-weight", "1000"],
    "w128-chiral-torsion100-metad": [*COSINE, "--torsion-weight", "100"],
    "w128-chiral-torsion1000-metad": [*COSINE, "--torsion-weight", "1000"],
}
TRAINING = ["--batch-size", "512", "--learning-rate", "1e-3", "--seed", "0", "--validation-fraction", "0.2",
            "--select-by", "free_energy"]  # fmt: skip
DESCRIPTION = (
    "alanine dipeptide, 5 backbone beads (ACE.C, ALA.N, ALA.CA, ALA.C, NME.N); priors by Boltzmann "
    "inversion + SchNet ({candidate}) force-matched to 42 ns of amber14/GBn2 at 300 K"
    "{extra}"
)


def train(work: Path, name: str, epochs: int) -> Path:
    """One candidate in its own process on one thread; resumes an interrupted run."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    config = folder.with_suffix(".json")
    config.write_text(json.dumps({**BASE, **CANDIDATES[name]}, indent=1))
    data = CANDIDATE_DATA.get(name, DATA)
    if not data.is_file():
        raise SystemExit(f"{data} is missing: see the module docstring for the commands that make it")
    argv = [sys.executable, "-m", "gnnmd.cli", "train", "--data", str(data), "-o", str(folder),
            "--model-config", str(config), "--epochs", str(epochs), *TRAINING,
            *EXTRA_TRAINING.get(name, [])]  # fmt: skip
    with (folder.parent / f"{name}.log").open("a") as log:
        done = subprocess.run(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    if done.returncode != 0:
        raise SystemExit(f"training {name} failed (see {work / name}.log)")
    return folder / "best.pt"


def held_out_score(checkpoint: Path) -> float:
    from gnnmd.models import read_checkpoint

    return float(read_checkpoint(checkpoint)["metadata"]["training"]["val_free_energy_js"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "ala2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--processes", type=int, default=2, help="candidates trained at once, one CPU each")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--no-ship", action="store_true", help="choose and validate, but do not ship")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is missing: run python scripts/build_reference.py ala2 first")
    with ThreadPoolExecutor(args.processes) as pool:
        runs = {name: pool.submit(train, args.work, name, args.epochs) for name in args.candidates}
        scores = {name: held_out_score(run.result()) for name, run in runs.items()}
    chosen = min(scores, key=scores.get)
    print(json.dumps({"held_out_free_energy_js": scores, "chosen": chosen}, indent=1))
    (args.work / "selection.json").write_text(json.dumps({"scores": scores, "chosen": chosen}, indent=1))
    model = args.work / chosen / "best.pt"
    report = validate(model, args.work)
    if not args.no_ship:
        ship(model, chosen, scores, report)
        shutil.copy(args.work / "validation.json", REPO / "benchmarks" / "ala2_validation.json")
        shutil.copy(args.work / "plots" / "ala2_validation.png", REPO / "benchmarks" / "ala2_validation.png")


#: Replicas of the validation (each 40 ps, 4 ps of it equilibration): the model's own sampling noise
#: adds to its JS divergence; at 128 replicas it is about the reference's noise floor.
VALIDATION_REPLICAS = 256


def validate(model: Path, work: Path) -> dict:
    """`gnnmd validate` of the chosen model against the whole reference; returns its ala2 report."""
    from gnnmd.cli import main as gnnmd

    report, plots = work / "validation.json", work / "plots"
    gnnmd(["validate", str(model), "--reference", str(DATA), "--replicas", str(VALIDATION_REPLICAS),
           "--steps", "20000", "--equilibration-steps", "2000", "--json", str(report),
           "--plots", str(plots)])  # fmt: skip
    return json.loads(report.read_text())["molecules"]["ala2"]


def good_for(report: dict) -> str:
    """What the model is good for, with the validation's figures beside it."""
    js, alone = report["js_divergence"]["phi_psi"], report["priors_only"]["js_divergence"]["phi_psi"]
    helix = report["populations"]["model"]["alpha_R"]["population"]
    reference = report["populations"]["reference"]["alpha_R"]["population"]
    return (
        f"alanine dipeptide in amber14/GBn2 at 300 K: phi/psi JS {js:.3f} to the reference (priors alone "
        f"{alone:.3f}, noise floor {report['noise_floor']:.4f}); alpha_R {helix:.2f} vs {reference:.2f}"
    )


def data_provenance(name: str) -> str:
    """Where a candidate's training data came from."""
    reference = "scripts/build_reference.py ala2: gnnmd data allatom ala2, 42 x 1 ns, seeds 1000+"
    if name not in CANDIDATE_DATA:
        return reference
    biased = "scripts/torsion_free_energy.py reference --runs 4 --ns 6 --seed 11 --dataset"
    return f"{reference}; plus phi-biased runs, forces without the bias, never held out ({biased})"


def ship(checkpoint: Path, name: str, scores: dict, report: dict) -> Path:
    """Write the chosen checkpoint as the shipped ``ala2`` model and record its continuity values."""
    from gnnmd.models import PRETRAINED_DIR, load_model, save_checkpoint

    model = load_model(checkpoint)
    metadata = dict(model.metadata)
    metadata.update(
        name="ala2",
        description=DESCRIPTION.format(
            candidate=name, extra=" and 24 ns biased along phi" if name in CANDIDATE_DATA else ""
        ),
        good_for=good_for(report),
        candidate=name,
        candidates_held_out_free_energy_js=scores,
        data_provenance=data_provenance(name),
        built_by="scripts/build_ala2.py",
    )
    target = save_checkpoint(model, PRETRAINED_DIR / "ala2.pt", metadata)
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_shipped_models.py"), "--record"], check=True
    )
    return target


if __name__ == "__main__":
    main()
