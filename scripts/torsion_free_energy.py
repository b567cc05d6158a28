"""Alanine dipeptide's α_R / β / α_L by well-tempered metadynamics along φ: the reference and a model.

Plain runs cannot settle α_L (φ ≥ 0): the all-atom reference enters it about once in 80 ns and
a CG model's runs never did (benchmarks/RESULTS.md). A bias along φ alone makes both cross the
barrier many times per nanosecond and leaves everything else at fixed φ unbiased, so the
populations follow from the built free energy F(φ) and the biased samples
(:mod:`gnnmd.analysis.reweighting`). The same settings (Gaussian height and width, bias factor,
pace, a 1° grid) serve both sides:

- ``reference``: amber14/GBn2 all-atom runs (the data's protocol: 300 K, 2 fs, X-H bonds
  constrained, Langevin 1/ps) with OpenMM's own ``Metadynamics``, one independent run per group,
  each in its own process on one CPU thread; φ and ψ are the CG map's dihedrals, measured on
  their atoms.
- ``model``: the CG model in gnnmd's replica runner (:mod:`gnnmd.sim.metadynamics`), walkers in
  independent groups, started from reference frames; ``--priors-only`` switches the network off.
- ``report``: populations of each file, with the error over groups, and the same from the first
  half of the run (the bias built by then) as a convergence check.
- ``training-data``: the reference's frames and the biased runs' frames with their unbiased forces
  (``reference --dataset``) in one training set, the biased trajectories marked (never held out,
  histogrammed or used as a reference): force matching learns the mean force across the φ
  barrier and in α_L, where plain runs leave almost no frames.

    python scripts/torsion_free_energy.py reference --runs 4 --ns 2 -o out/ala2_metad_reference.npz
    python scripts/torsion_free_energy.py model ala2 --starts out/ala2-reference-10ns/ala2_reference.h5 \\
        --replicas 64 --groups 4 --deposits 1000 -o out/ala2_metad_model.npz
    python scripts/torsion_free_energy.py report out/ala2_metad_*.npz --plot F.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gnnmd.analysis.observables import measure
from gnnmd.analysis.reweighting import biased_populations
from gnnmd.nn.priors.geometry import dihedral_angles
from gnnmd.sim.metadynamics import MetadynamicsSettings

TEMPERATURE_K = 300.0
TIMESTEP_FS = 2.0


def metadynamics_settings(args: argparse.Namespace) -> MetadynamicsSettings:
    return MetadynamicsSettings(
        height_kj_per_mol=args.height, width_rad=args.width, bias_factor=args.bias_factor,
        pace_steps=args.pace, temperature_k=TEMPERATURE_K,
    )  # fmt: skip


def allatom_ala2(seed: int):
    """The all-atom alanine dipeptide of ``gnnmd data allatom ala2`` (amber14/GBn2, hydrogens added):
    its force field, OpenMM topology, positions (nm) and CG map (the beads of the shipped system)."""
    import mdtraj
    import openmm.app as app

    from gnnmd.data.allatom import FORCEFIELDS
    from gnnmd.data.allatom_structure import build_allatom
    from gnnmd.protein_mapping import map_to_cg
    from gnnmd.systems import load_system

    system = load_system("ala2")
    forcefield = app.ForceField(*FORCEFIELDS["amber14-gbn2"])
    topology, positions = build_allatom(system, forcefield, seed)
    trajectory = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(topology))
    cg, _ = map_to_cg(trajectory, system.topology.mapping, system.name, str(system.pdb_path))
    return forcefield, topology, positions, cg


def reference_run(seed: int, ns: float, settings: MetadynamicsSettings, output: Path) -> None:
    """One all-atom run biased along φ; writes, one per deposit, its φ/ψ samples, its CG frames and
    their mapped forces *without the bias* ("groups" force map, kJ/mol/nm), and F(φ)."""
    import mdtraj
    import openmm
    import openmm.app as app
    from openmm import unit

    from gnnmd.data.force_map import aggregate_forces, bead_groups

    forcefield, topology, positions, cg = allatom_ala2(seed)
    beads = np.asarray(cg.atom_indices)
    atoms = beads[np.asarray(cg.dihedrals)]  # (2, 4): φ, ψ on atoms
    force_groups = bead_groups(mdtraj.Topology.from_openmm(topology), cg, "groups")
    omm = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    phi = openmm.CustomTorsionForce("theta")
    phi.addTorsion(*(int(a) for a in atoms[0]))
    variable = app.BiasVariable(
        phi, -math.pi, math.pi, settings.width_rad, periodic=True, gridWidth=settings.grid_points + 1
    )
    kelvin = settings.temperature_k * unit.kelvin
    height = settings.height_kj_per_mol * unit.kilojoule_per_mole
    bias = app.Metadynamics(omm, [variable], kelvin, settings.bias_factor, height, settings.pace_steps)
    # Metadynamics puts its force in a group of its own (the last force added): leave it out of the
    # recorded forces, which are the physical ones.
    physical = set(range(32)) - {omm.getForce(omm.getNumForces() - 1).getForceGroup()}
    integrator = openmm.LangevinMiddleIntegrator(
        kelvin, 1.0 / unit.picosecond, TIMESTEP_FS * unit.femtosecond
    )
    integrator.setRandomNumberSeed(seed)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(topology, omm, integrator, platform, {"Threads": "1"})
    simulation.context.setPositions(positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(kelvin, seed)
    deposits = int(round(ns * 1e6 / TIMESTEP_FS / settings.pace_steps))
    coordinates, forces, half = [], [], None
    for index in range(deposits):
        bias.step(simulation, settings.pace_steps)
        state = simulation.context.getState(getPositions=True, getForces=True, groups=physical)
        coordinates.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[beads])
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
        if index + 1 == deposits // 2:
            half = bias.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)[:-1]
    coordinates = np.asarray(coordinates)
    angles = measure(coordinates, cg.dihedrals, dihedral_angles)
    final = bias.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)[:-1]
    mapped = aggregate_forces(np.asarray(forces), force_groups, cg.n_beads)
    np.savez(output, samples=angles, free_energy=final, free_energy_half=half, coordinates=coordinates,
             forces=mapped)  # fmt: skip


def reference(args: argparse.Namespace) -> None:
    """``--runs`` independent reference runs, ``--processes`` at a time, merged into one file."""
    settings = metadynamics_settings(args)
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"run_{i}.npz" for i in range(args.runs)]
        pending = list(range(args.runs))
        running: list[subprocess.Popen] = []
        while pending or running:
            while pending and len(running) < args.processes:
                index = pending.pop(0)
                argv = [sys.executable, __file__, "reference-run", "--seed", str(args.seed + index),
                        "--ns", str(args.ns), "-o", str(paths[index]), *settings_argv(args)]  # fmt: skip
                running.append(subprocess.Popen(argv, env={**os.environ, "OPENMM_CPU_THREADS": "1"}))
            running[0].wait()
            if running[0].returncode != 0:
                raise SystemExit(f"reference run failed ({running[0].args})")
            running.pop(0)
        runs = [dict(np.load(p)) for p in paths]
    save(args.output, "reference amber14/GBn2 all-atom (OpenMM Metadynamics)", settings,
         [r["samples"] for r in runs], [r["free_energy"] for r in runs],
         [r["free_energy_half"] for r in runs], time.time() - started, vars(args))  # fmt: skip
    if args.dataset:
        write_biased_dataset(args, settings, runs)


def write_biased_dataset(args: argparse.Namespace, settings: MetadynamicsSettings, runs: list[dict]) -> None:
    """The runs' CG frames and unbiased mapped forces as one dataset, a trajectory per run. The bias
    depends on φ, a function of the beads, so the atoms given the beads are sampled as without it:
    the mapped forces average to the unbiased mean force and serve force matching, while the frames
    are not Boltzmann-distributed along φ (never use them for histograms or priors)."""
    from gnnmd.data.dataset import write_molecule

    *_, cg = allatom_ala2(args.seed)
    runs_of_frames = [np.full(len(r["forces"]), i, dtype=np.int32) for i, r in enumerate(runs)]
    write_molecule(
        args.dataset, cg, np.concatenate([r["coordinates"] for r in runs]),
        np.concatenate([r["forces"] for r in runs]),
        description=f"ala2, amber14/GBn2, 300 K, {len(runs)} runs of {args.ns} ns biased along phi by "
        f"well-tempered metadynamics ({json.dumps(vars(settings))}), seeds {args.seed}+; frames at each "
        "deposit; groups force map WITHOUT the bias force: for force matching only, not Boltzmann along "
        "phi; scripts/torsion_free_energy.py",
        trajectories=np.concatenate(runs_of_frames),
    )  # fmt: skip
    print(f"wrote {args.dataset}")


def training_data(args: argparse.Namespace) -> None:
    """A training set: the reference's frames and the biased runs' frames (their trajectories numbered
    after the reference's and marked biased: trained on, never held out or histogrammed)."""
    from gnnmd.data.dataset import ForceDataset, write_molecule

    reference, biased = ForceDataset(args.reference), ForceDataset(args.biased)
    topology = reference.topologies[0]
    if biased.topologies[0].bead_types != topology.bead_types or reference.biased_trajectories[0].size:
        raise SystemExit(f"{args.biased} does not fit {args.reference} (other beads, or a biased reference)")
    (x, f), (xb, fb) = reference.frames(0), biased.frames(0)
    ids = reference.trajectory_ids[0]
    extra = biased.trajectory_ids[0].astype(np.int64) + int(ids.max()) + 1
    write_molecule(
        args.output, topology, np.concatenate([x, xb]), np.concatenate([f, fb]),
        description=f"{args.reference.name} (trajectories 0-{ids.max()}) and the biased runs of "
        f"{args.biased.name} (trajectories {extra.min()}-{extra.max()}, marked biased)",
        trajectories=np.concatenate([ids, extra]), biased_trajectories=np.unique(extra),
    )  # fmt: skip
    print(f"wrote {args.output}: {len(x)} reference and {len(xb)} biased frames")


def settings_argv(args: argparse.Namespace) -> list[str]:
    return ["--height", str(args.height), "--width", str(args.width), "--bias-factor", str(args.bias_factor),
            "--pace", str(args.pace)]  # fmt: skip


def model(args: argparse.Namespace) -> None:
    """The CG model's walkers in groups, started from reference frames spread over the file."""
    import torch

    from gnnmd.data.dataset import ForceDataset
    from gnnmd.engine.settings import LangevinSettings
    from gnnmd.models import load_model
    from gnnmd.nn.potential import priors_only
    from gnnmd.sim.metadynamics import TorsionBias, TorsionMetadynamics, run_walkers
    from gnnmd.sim.runner import ReplicaRunner

    torch.set_num_threads(args.threads)
    settings = metadynamics_settings(args)
    potential = load_model(args.model, backend=args.backend)
    if args.priors_only:
        potential = priors_only(potential)
    data = ForceDataset(args.starts)
    topology = data.topologies[0]
    picks = np.linspace(0, len(data) - 1, args.replicas).astype(int)
    unique, inverse = np.unique(picks, return_inverse=True)  # fewer frames than walkers: some share
    starts = data.frames(0, unique)[0][inverse]
    bias = TorsionBias(settings, args.groups)
    walkers = TorsionMetadynamics(
        bias, topology.dihedrals[0], [r % args.groups for r in range(args.replicas)]
    )
    langevin = LangevinSettings(timestep_fs=TIMESTEP_FS, temperature_k=TEMPERATURE_K)
    runner = ReplicaRunner(potential, [topology] * args.replicas, starts.reshape(-1, 3), langevin,
                           seed=args.seed, forces=walkers)  # fmt: skip
    started = time.time()
    first = run_walkers(runner, walkers, args.deposits // 2)
    half = bias.free_energy().numpy()
    frames = np.concatenate([first, run_walkers(runner, walkers, args.deposits - args.deposits // 2)])
    angles = measure(frames.reshape(-1, topology.n_beads, 3), topology.dihedrals, dihedral_angles)
    angles = angles.reshape(len(frames), args.replicas, 2)
    groups = [angles[:, walkers.group.numpy() == g].reshape(-1, 2) for g in range(args.groups)]
    label = f"model {args.model}" + (" priors only" if args.priors_only else "") + f" ({args.backend})"
    save(args.output, label, settings, groups, list(bias.free_energy().numpy()), list(half),
         time.time() - started, vars(args))  # fmt: skip


def save(output, label, settings, samples, finals, halves, seconds, arguments) -> None:
    """One file per side: samples of every group (in deposit order), its final and half-time F."""
    groups = np.concatenate([np.full(len(s), g) for g, s in enumerate(samples)])
    np.savez(
        output, samples=np.concatenate(samples), groups=groups, free_energies=np.stack(finals),
        free_energies_half=np.stack(halves), label=label, seconds=seconds,
        settings=json.dumps({**vars(settings), **{k: str(v) for k, v in arguments.items() if k != "func"}}),
    )  # fmt: skip
    print(f"wrote {output} ({label}, {seconds:.0f} s)")


def populations(path: Path) -> dict:
    """The populations of one file, from the whole run and from its first half alone."""
    with np.load(path, allow_pickle=False) as saved:
        samples, groups = saved["samples"], saved["groups"]
        out = {"label": str(saved["label"]), "seconds": float(saved["seconds"])}
        out["all"] = biased_populations("phi_psi", samples, groups, 0, saved["free_energies"], TEMPERATURE_K)
        first = np.concatenate(
            [np.flatnonzero(groups == g)[: (groups == g).sum() // 2] for g in np.unique(groups)]
        )
        out["first_half"] = biased_populations(
            "phi_psi", samples[first], groups[first], 0, saved["free_energies_half"], TEMPERATURE_K
        )
    return out


def report(args: argparse.Namespace) -> None:
    rows = {str(path): populations(path) for path in args.files}
    for path, row in rows.items():
        print(f"{row['label']} ({path}, {row['seconds']:.0f} s)")
        for part in ("all", "first_half"):
            cells = ", ".join(f"{state} {v['population']:.4f} ± {v['error']:.4f}"
                              for state, v in row[part]["populations"].items())  # fmt: skip
            print(f"  {part:10s} {cells}; unsampled weight {row[part]['unsampled_weight']:.1e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot_free_energies(args.files, args.plot)


def plot_free_energies(files: list[Path], output: Path) -> None:
    """F(φ) of every file: the mean over its groups (each shifted to minimum 0) and their range."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for path in files:
        with np.load(path, allow_pickle=False) as saved:
            energies, label = saved["free_energies"], str(saved["label"])
        energies = energies - energies.min(axis=1, keepdims=True)
        phi = np.degrees(-math.pi + 2 * math.pi * np.arange(energies.shape[1]) / energies.shape[1])
        line = axes.plot(phi, energies.mean(axis=0), label=label)[0]
        axes.fill_between(phi, energies.min(axis=0), energies.max(axis=0), color=line.get_color(), alpha=0.25)
    axes.axvline(0.0, color="grey", lw=0.8, ls=":")
    axes.set(xlabel="φ (degrees)", ylabel="F(φ) (kJ/mol)", xlim=(-180, 180), ylim=(0, 40))
    axes.set_title("alanine dipeptide: free energy along φ (well-tempered metadynamics, 300 K)", fontsize=9)
    axes.legend(fontsize=7)
    figure.savefig(output, dpi=120)
    print(f"wrote {output}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = MetadynamicsSettings()
    bias_options = argparse.ArgumentParser(add_help=False)
    bias_options.add_argument("--height", type=float, default=defaults.height_kj_per_mol, help="kJ/mol")
    bias_options.add_argument("--width", type=float, default=defaults.width_rad, help="rad")
    bias_options.add_argument("--bias-factor", type=float, default=defaults.bias_factor)
    bias_options.add_argument("--pace", type=int, default=defaults.pace_steps, help="steps between deposits")
    bias_options.add_argument("--seed", type=int, default=1)
    ref = commands.add_parser("reference", parents=[bias_options], help="all-atom runs")
    ref.add_argument("--runs", type=int, default=4)
    ref.add_argument("--ns", type=float, default=2.0, help="per run")
    ref.add_argument("--processes", type=int, default=2)
    ref.add_argument("-o", "--output", type=Path, required=True)
    ref.add_argument("--dataset", type=Path, help="also write the CG frames and unbiased forces (.h5)")
    one = commands.add_parser("reference-run", parents=[bias_options], help="one all-atom run (internal)")
    one.add_argument("--ns", type=float, required=True)
    one.add_argument("-o", "--output", type=Path, required=True)
    cg = commands.add_parser("model", parents=[bias_options], help="a CG model's walkers")
    cg.add_argument("model")
    cg.add_argument("--starts", type=Path, required=True, help="dataset whose frames start the walkers")
    cg.add_argument("--replicas", type=int, default=64)
    cg.add_argument("--groups", type=int, default=4)
    cg.add_argument("--deposits", type=int, default=1000, help="per walker")
    cg.add_argument("--backend", default="tabulated")
    cg.add_argument("--threads", type=int, default=1)
    cg.add_argument("--priors-only", action="store_true")
    cg.add_argument("-o", "--output", type=Path, required=True)
    data = commands.add_parser("training-data", help="reference + biased frames, one training set")
    data.add_argument("--reference", type=Path, required=True)
    data.add_argument("--biased", type=Path, required=True, help="a reference --dataset file")
    data.add_argument("-o", "--output", type=Path, required=True)
    rep = commands.add_parser("report", help="populations of result files")
    rep.add_argument("files", type=Path, nargs="+")
    rep.add_argument("--json", type=Path)
    rep.add_argument("--plot", type=Path, help="PNG of F(φ) of every file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.command == "reference-run":
        reference_run(args.seed, args.ns, metadynamics_settings(args), args.output)
    else:
        commands = {"reference": reference, "model": model, "report": report, "training-data": training_data}
        commands[args.command](args)


if __name__ == "__main__":
    main()
