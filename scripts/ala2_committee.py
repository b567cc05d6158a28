"""Committee uncertainty on CG alanine dipeptide: force disagreement near the reference, heated, distorted.

    python scripts/ala2_committee.py --member runs/ala2-seed1/best.pt [--work out/ala2-committee]

The committee is the shipped ``ala2`` (trained with seed 0) and ``--member``, trained on
the same data (``python scripts/build_reference.py ala2``) with another seed::

    gnnmd train --data out/ala2-reference/ala2_reference.h5 --model-config CONFIG.json \\
        --batch-size 512 --select-by free_energy --validation-fraction 0.2 --seed 1 -o runs/ala2-seed1

It reports the RMS force disagreement per frame (kJ/mol/nm; see
gnnmd/nn/committee.py): on the reference frames, on reference frames with
Gaussian noise or compressed, on reference frames grouped by how densely the
data sample their (φ, ψ) region, and along Langevin runs of ``ala2`` from
reference frames at several thermostat temperatures. The runs go through
:class:`~gnnmd.sim.simulation.Simulation` with a
:class:`~gnnmd.sim.committee.CommitteeMonitor`, the code path of
``gnnmd simulate --committee`` (whose systems are PDB-mapped proteins).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from gnnmd.analysis.observables import term_observables
from gnnmd.data.dataset import ForceDataset
from gnnmd.models import load_model
from gnnmd.nn.committee import Committee
from gnnmd.sim import LangevinSettings, ReplicaRunner
from gnnmd.sim.committee import CommitteeMonitor
from gnnmd.sim.reporters import COMMITTEE_COLUMNS
from gnnmd.sim.simulation import OutputOptions, Simulation

REPO = Path(__file__).resolve().parents[1]
NOISE_NM = (0.005, 0.01, 0.02, 0.05)
COMPRESSION = (0.9, 0.8)
#: Frames per (φ, ψ) bin (12 x 12 bins of 30°) that delimit the density groups.
DENSITY_EDGES = (0, 10, 50, 200, 10**9)
TEMPERATURES_K = (300.0, 600.0, 1200.0)


def stats(values: np.ndarray) -> dict:
    """Median, 95th and 99th percentiles and maximum of per-frame disagreements (kJ/mol/nm)."""
    values = np.asarray(values, dtype=np.float64)
    p95, p99 = np.percentile(values, [95, 99])
    return {"frames": int(values.size), "median": float(np.median(values)), "p95": float(p95),
            "p99": float(p99), "max": float(values.max())}  # fmt: skip


def frame_disagreement(committee: Committee, topology, frames: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """RMS disagreement (kJ/mol/nm) of each frame (F, n, 3) nm."""
    values = []
    for start in range(0, len(frames), chunk):
        part = frames[start : start + chunk]
        batch = committee.pack([topology] * len(part))
        positions = torch.as_tensor(part.reshape(-1, 3), dtype=torch.float32)
        values.append(committee.evaluate(positions, batch).rms.numpy())
    return np.concatenate(values)


def distorted(committee: Committee, topology, frames: np.ndarray, seed: int) -> dict:
    """Disagreement on frames with Gaussian noise (nm) and on frames compressed about their centroid."""
    rng = np.random.default_rng(seed)
    result = {}
    for sigma in NOISE_NM:
        noisy = frames + rng.normal(0.0, sigma, frames.shape)
        result[f"noise {sigma} nm"] = stats(frame_disagreement(committee, topology, noisy))
    for factor in COMPRESSION:
        centre = frames.mean(axis=1, keepdims=True)
        squeezed = centre + factor * (frames - centre)
        result[f"compressed x{factor}"] = stats(frame_disagreement(committee, topology, squeezed))
    return result


def by_density(topology, frames: np.ndarray, disagreement: np.ndarray) -> dict:
    """Disagreement of reference frames grouped by the number of reference frames in their (φ, ψ) bin."""
    (phi_psi,) = [o.samples for o in term_observables(topology, frames) if o.name == "phi_psi"]
    counts, phi_edges, psi_edges = np.histogram2d(*phi_psi.T, bins=12, range=[(-np.pi, np.pi)] * 2)
    phi_bin = np.clip(np.digitize(phi_psi[:, 0], phi_edges) - 1, 0, 11)
    psi_bin = np.clip(np.digitize(phi_psi[:, 1], psi_edges) - 1, 0, 11)
    density = counts[phi_bin, psi_bin]
    groups = {}
    for low, high in zip(DENSITY_EDGES[:-1], DENSITY_EDGES[1:], strict=True):
        chosen = (density >= low) & (density < high)
        groups[f"{low}-{high if high < 10**9 else 'max'} frames per bin"] = stats(disagreement[chosen])
    return groups


def heated(model, committee: Committee, topology, frames: np.ndarray, args: argparse.Namespace) -> dict:
    """Langevin runs of ``model`` at each temperature, committee every report (steps of 2 fs)."""
    per_temperature = args.replicas
    temperatures = [t for t in TEMPERATURES_K for _ in range(per_temperature)]
    starts = frames[np.random.default_rng(args.seed).choice(len(frames), len(temperatures), replace=False)]
    runner = ReplicaRunner(
        model, [topology] * len(temperatures), starts.reshape(-1, 3), LangevinSettings(2.0),
        seed=args.seed, thermostat_temperatures_k=temperatures,
    )  # fmt: skip
    out = args.work / "runs"
    options = OutputOptions(out, report_interval=args.interval, checkpoint_interval=0,
                            health_interval=args.interval, on_failure="drop")  # fmt: skip
    monitor = CommitteeMonitor(committee, args.interval)
    simulation = Simulation(runner, options, committee=monitor, overwrite=True)  # a scratch folder, rerun
    started = time.perf_counter()
    summary = simulation.run(args.steps)
    wall = time.perf_counter() - started
    simulation.close()
    dropped = {str(k): v for k, v in summary.dropped.items()}
    result: dict = {"steps": args.steps, "timestep_fs": 2.0, "replicas_per_temperature": per_temperature,
                    "dropped": dropped, "wall_seconds": wall}  # fmt: skip
    for index, temperature in enumerate(TEMPERATURES_K):
        replicas = range(index * per_temperature, (index + 1) * per_temperature)
        rows = [row for r in replicas for row in read_log(out / f"replica_{r:04d}.csv")]
        equilibrated = [row for row in rows if int(row["step"]) >= args.steps // 5]
        result[f"{temperature:g} K"] = {
            "rms": stats([float(row[COMMITTEE_COLUMNS[0]]) for row in equilibrated]),
            "largest bead": stats([float(row[COMMITTEE_COLUMNS[1]]) for row in equilibrated]),
            "mean_temperature_k": float(np.mean([float(row["temperature_k"]) for row in equilibrated])),
        }
    return result


def read_log(path: Path) -> list[dict]:
    with path.open() as file:
        return list(csv.DictReader(file))


def cost(model, committee: Committee, topology, frames: np.ndarray, replicas: int) -> dict:
    """Seconds per MD step and per committee evaluation for ``replicas`` replicas."""
    starts = frames[:replicas].reshape(-1, 3)
    runner = ReplicaRunner(model, [topology] * replicas, starts, LangevinSettings(2.0))
    runner.step(10)
    started = time.perf_counter()
    runner.step(200)
    step = (time.perf_counter() - started) / 200
    batch = committee.pack(runner.topologies)
    started = time.perf_counter()
    for _ in range(20):
        committee.evaluate(runner.positions, batch)
    evaluation = (time.perf_counter() - started) / 20
    return {"replicas": replicas, "seconds_per_step": step, "seconds_per_evaluation": evaluation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", type=Path, required=True, help="second committee member (checkpoint)")
    parser.add_argument("--data", type=Path, default=REPO / "out" / "ala2-reference" / "ala2_reference.h5",
                        help="alanine-dipeptide reference (scripts/build_reference.py ala2)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=REPO / "out" / "ala2-committee")
    parser.add_argument("--replicas", type=int, default=16, help="replicas per temperature (16)")
    parser.add_argument("--steps", type=int, default=10_000, help="steps of 2 fs per run (10,000)")
    parser.add_argument("--interval", type=int, default=100, help="steps between log rows (100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is missing: run python scripts/build_reference.py ala2")
    dataset = ForceDataset(args.data)
    topology, (frames, _) = dataset.topologies[0], dataset.frames(0)
    frames = frames[::10]  # every 2 ps: 20,580 frames of the 42 trajectories
    model = load_model("ala2")
    names = ["ala2", str(args.member)]
    committee = Committee([load_model(name) for name in names], names)
    reference = frame_disagreement(committee, topology, frames)
    report = {
        "members": committee.names,
        "reference frames": stats(reference),
        "reference frames by (phi, psi) density": by_density(topology, frames, reference),
        "distorted reference frames": distorted(committee, topology, frames, args.seed),
        "cost": cost(model, committee, topology, frames, 48),
        "langevin": heated(model, committee, topology, frames, args),
    }
    text = json.dumps(report, indent=1)
    (args.work / "committee.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
