"""A TorchMD-Net CG model run the way its users run it (torchmd's Langevin integrator with
TorchMD-Net's ``External`` calculator) against the same model imported into gnnmd, side by side.

Usage (2 cores, nothing else heavy running)::

    python benchmarks/torchmdnet_vs_gnnmd.py --replicas 64 --steps 20 --rounds 3 [--workdir out/tmn_bench]

What is run, identically on both sides: a shipped protein (default chignolin) with TorchMD's CA mapping, a
TorchMD-Net graph-network of the benchmark size (128 features, 5 blocks, 128 Gaussians, 20 Å
cosine cutoff, tanh, random weights with a small readout), priors from a TorchMD force-field
YAML (harmonic bonds at the native lengths, RepulsionCG), 1 fs Langevin at 300 K, float32.
Rounds interleave the two engines; each row is the median over rounds; both run 2 threads. gnnmd is timed with
``gnnmd bench`` in a subprocess (its own warm-up), torchmd in this process after warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

warnings.filterwarnings("ignore")
DT_FS = 1.0
TEMPERATURE_K = 300.0
ARGS = dict(
    model="graph-network", embedding_dimension=128, num_layers=5, num_rbf=128, rbf_type="gauss",
    trainable_rbf=False, activation="tanh", neighbor_embedding=False, cutoff_lower=0.0, cutoff_upper=20.0,
    max_z=25, max_num_neighbors=64, aggr="add", precision=32, derivative=True, atom_filter=-1,
    prior_model=None, output_model="Scalar", reduce_op="sum", box_vecs=None,
)  # fmt: skip


def write_inputs(workdir: Path, name: str) -> dict[str, Path]:
    """PSF, force field, TorchMD-Net checkpoint, and the gnnmd import of them."""
    import parmed
    from torchmdnet.models.model import create_model

    from gnnmd.interop.importing import import_torchmdnet
    from gnnmd.interop.torchmdnet import ONE_LETTER
    from gnnmd.systems import load_system

    workdir.mkdir(parents=True, exist_ok=True)
    system = load_system(name, "ca")
    structure = parmed.Structure()
    for i, residue in enumerate(system.topology.residue_names):
        atom = parmed.Atom(name="CA", type=f"CA{ONE_LETTER[residue]}", mass=12.0)
        structure.add_atom(atom, residue, i + 1, "A")
    for i in range(len(structure.atoms) - 1):
        structure.bonds.append(parmed.Bond(structure.atoms[i], structure.atoms[i + 1]))
    psf = workdir / f"{name}_ca.psf"
    parmed.charmm.CharmmPsfFile.from_structure(structure).write_psf(str(psf))
    x = system.positions_nm * 10.0
    kinds = sorted({a.type for a in structure.atoms})
    lengths = np.linalg.norm(x[1:] - x[:-1], axis=1)
    document = {
        "atomtypes": kinds,
        "bonds": {"(X, X)": {"k0": 50.0, "req": float(lengths.mean())}},
        "lj": {kind: {"sigma": 4.0, "epsilon": 1.0} for kind in kinds},
        "masses": {kind: 12.0 for kind in kinds},
    }
    force_field = workdir / "priors.yaml"
    force_field.write_text(yaml.safe_dump(document))
    torch.manual_seed(0)
    model = create_model(dict(ARGS))
    with torch.no_grad():
        model.output_model.output_network.layers[-1].weight.mul_(0.01)
    checkpoint = workdir / "cg_model.ckpt"
    state = {"model." + key: value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": ARGS, "state_dict": state}, checkpoint)
    imported = workdir / "imported.pt"
    import_torchmdnet(checkpoint, psf, imported, priors=force_field)
    np.save(workdir / "positions_angstrom.npy", x)
    return {"psf": psf, "force_field": force_field, "checkpoint": checkpoint, "imported": imported}


def torchmd_ms_per_step(files: dict[str, Path], replicas: int, steps: int, warmup: int) -> float:
    """torchmd's integrator with TorchMD-Net's External calculator: ms per MD step (all replicas)."""
    import parmed
    from torchmd.forcefields.forcefield import ForceField
    from torchmd.forces import Forces
    from torchmd.integrator import Integrator, maxwell_boltzmann
    from torchmd.parameters import Parameters
    from torchmd.systems import System
    from torchmdnet.calculators import External

    from gnnmd.interop.torchmdnet import TORCHMD_CG_EMBEDDINGS

    psf = parmed.charmm.CharmmPsfFile(str(files["psf"]))
    n = len(psf.atoms)
    bonds = np.array([[b.atom1.idx, b.atom2.idx] for b in psf.bonds])
    none = {
        "angles": np.zeros((0, 3), int),
        "dihedrals": np.zeros((0, 4), int),
        "impropers": np.zeros((0, 4), int),
    }
    mol = types.SimpleNamespace(
        numAtoms=n, atomtype=np.array([a.type for a in psf.atoms]), charge=np.zeros(n), masses=None,
        bonds=bonds,
        **none,
    )  # fmt: skip
    terms = ["bonds", "repulsioncg"]
    force_field = ForceField.create(mol, str(files["force_field"]))
    parameters = Parameters(force_field, mol, terms, precision=torch.float32)
    parameters.A, parameters.B = parameters.get_AB()  # torchmd 1.1.2 builds them for "lj" only
    embeddings = torch.tensor([TORCHMD_CG_EMBEDDINGS[a.residue.name] for a in psf.atoms]).repeat(replicas, 1)
    external = External(str(files["checkpoint"]), embeddings, device="cpu")
    forces = Forces(parameters, terms=terms, external=external, cutoff=ARGS["cutoff_upper"])
    system = System(n, replicas, torch.float32, "cpu")
    system.set_positions(np.load(files["positions_angstrom.npy"])[:, :, None].repeat(replicas, axis=2))
    system.set_box(np.zeros((3, replicas)))
    system.set_velocities(maxwell_boltzmann(parameters.masses, TEMPERATURE_K, replicas))
    integrator = Integrator(system, forces, DT_FS, "cpu", gamma=1.0, T=TEMPERATURE_K)
    integrator.step(warmup)
    start = time.perf_counter()
    integrator.step(steps)
    return (time.perf_counter() - start) / steps * 1e3


def gnnmd_ms_per_step(
    imported: Path, system: str, backend: str, replicas: int, steps: int, warmup: int, out: Path
) -> float:
    command = [sys.executable, "-m", "gnnmd.cli", "bench", "--model", str(imported), "--system", system,
               "--replicas", str(replicas), "--steps", str(steps), "--warmup", str(warmup),
               "--dt-fs", str(DT_FS), "--backend", backend, "--threads", "2", "--json", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=out.parent)
    row = json.loads(out.read_text())["benchmarks"][0]
    return float(row["ms_per_step"]) if "ms_per_step" in row else 1e3 / float(row["steps_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="chignolin", help="shipped system, read with the ca mapping")
    parser.add_argument("--replicas", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="reference,fused,tabulated")
    parser.add_argument("--workdir", type=Path, default=Path("out/tmn_bench"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    files = write_inputs(args.workdir.resolve(), args.system)
    files["positions_angstrom.npy"] = args.workdir.resolve() / "positions_angstrom.npy"
    backends = [b for b in args.backends.split(",") if b]
    samples: dict[str, list[float]] = {"torchmd + TorchMD-Net": []} | {f"gnnmd {b}": [] for b in backends}
    for _ in range(args.rounds):
        samples["torchmd + TorchMD-Net"].append(
            torchmd_ms_per_step(files, args.replicas, args.steps, args.warmup)
        )
        for backend in backends:
            out = args.workdir.resolve() / f"bench_{backend}.json"
            ms = gnnmd_ms_per_step(
                files["imported"], args.system, backend, args.replicas, args.steps, args.warmup, out
            )
            samples[f"gnnmd {backend}"].append(ms)
    baseline = statistics.median(samples["torchmd + TorchMD-Net"])
    from gnnmd.systems import load_system

    beads = load_system(args.system, "ca").topology.n_beads
    print(f"{args.system} ({beads} CA beads) x {args.replicas} replicas, {args.steps} steps x {args.rounds} "
          f"rounds, dt {DT_FS} fs, float32, 2 threads")  # fmt: skip
    print(f"{'engine':<28}{'ms/step':>10}{'ns/day':>10}{'vs torchmd':>12}")
    for name, values in samples.items():
        ms = statistics.median(values)
        ns_day = args.replicas * DT_FS * 1e-6 * (1e3 / ms) * 86400
        print(f"{name:<28}{ms:>10.1f}{ns_day:>10.2f}{baseline / ms:>11.1f}x")


if __name__ == "__main__":
    main()
