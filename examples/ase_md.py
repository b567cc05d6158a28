"""All-atom alanine dipeptide in ASE with the shipped ``ala2-allatom`` model: relax, then Langevin MD.

    python examples/ase_md.py [--steps 2000] [--out out/ase_md]

Writes to --out: ``relax.traj`` (the BFGS path), ``md.traj`` (an ASE trajectory
of the Langevin run, every --every steps, readable with ``ase.io.read`` or
``ase gui``) and ``md.csv`` (time in ps, potential and kinetic energy in eV,
temperature in K).

The model was trained on frames with X-H bonds constrained, so X-H bond
lengths are held fixed here too (RATTLE through ASE's FixBondLengths).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.io import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.optimize import BFGS

from gnnmd.ase import GNNMDCalculator, hydrogen_bond_constraints, pdb_atoms
from gnnmd.data.ala2_allatom import PDB_FILE


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ala2-allatom", help="shipped model name or checkpoint path")
    parser.add_argument("--steps", type=int, default=2000, help="Langevin steps (default 2000)")
    parser.add_argument("--timestep-fs", type=float, default=1.0, help="time step, fs (default 1)")
    parser.add_argument(
        "--temperature-k", type=float, default=300.0, help="bath temperature, K (default 300)"
    )
    parser.add_argument(
        "--friction-per-ps", type=float, default=10.0,
        help="Langevin friction, 1/ps (default 10: reaches the bath temperature within about 0.2 ps)",
    )  # fmt: skip
    parser.add_argument("--fmax", type=float, default=0.05, help="BFGS force threshold, eV/Å (default 0.05)")
    parser.add_argument("--every", type=int, default=10, help="write a frame every this many steps")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial velocities and the noise")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (one is fastest for 22 atoms)"
    )
    parser.add_argument("--out", type=Path, default=Path("out/ase_md"), help="output folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    atoms = pdb_atoms(PDB_FILE)
    atoms.set_constraint(hydrogen_bond_constraints(atoms))
    atoms.calc = GNNMDCalculator(model=args.model, device=args.device)
    start = atoms.get_potential_energy()
    relax = BFGS(atoms, trajectory=str(args.out / "relax.traj"), logfile=str(args.out / "relax.log"))
    converged = relax.run(fmax=args.fmax, steps=1000)
    print(f"BFGS: {start:.3f} -> {atoms.get_potential_energy():.3f} eV in {relax.nsteps} steps "
          f"(converged: {converged})")  # fmt: skip

    rng = np.random.default_rng(args.seed)
    thermalize_momenta(atoms, args.temperature_k, rng=rng)
    Stationary(atoms)
    dynamics = Langevin(
        atoms, timestep=args.timestep_fs * units.fs, temperature_K=args.temperature_k,
        friction=args.friction_per_ps / (1000.0 * units.fs), fixcm=False, rng=rng,
    )  # fmt: skip
    trajectory = Trajectory(str(args.out / "md.traj"), "w", atoms)
    rows: list[dict] = []

    def record() -> None:
        trajectory.write()
        rows.append({
            "time_ps": dynamics.get_time() / (1000.0 * units.fs),
            "potential_ev": atoms.get_potential_energy(),
            "kinetic_ev": atoms.get_kinetic_energy(),
            "temperature_k": atoms.get_temperature(),
        })  # fmt: skip

    dynamics.attach(record, interval=args.every)
    dynamics.run(args.steps)
    trajectory.close()
    with open(args.out / "md.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    temperatures = [row["temperature_k"] for row in rows[len(rows) // 2 :]]
    mean = np.mean(temperatures)
    print(f"Langevin: {args.steps} steps of {args.timestep_fs} fs, second-half mean temperature {mean:.0f} K")
    print(f"wrote {args.out / 'md.traj'} and {args.out / 'md.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
