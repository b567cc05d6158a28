"""Energy conservation of ``ala2-allatom`` in ASE: VelocityVerlet with X-H bonds constrained.

    python benchmarks/ase_nve.py [--model ala2-allatom]

For three starting frames of the held-out reference data, velocities drawn at
300 K (seeded, centre of mass at rest), runs NVE with 0.5 fs and 1 fs steps and
prints the largest deviation of the total energy from its start and the change
from start to end, in meV, with the mean kinetic energy in eV.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from gnnmd.ase import GNNMDCalculator, hydrogen_bond_constraints
from gnnmd.data.ala2_allatom import ala2_allatom_frames, ala2_allatom_topology
from gnnmd.units import ANGSTROM_PER_NM

#: (seed, frame, time step in fs, steps)
RUNS = [(seed, frame, dt, steps) for seed, frame in ((0, 1900), (1, 1850), (2, 1990))
        for dt, steps in ((0.5, 400), (1.0, 200), (0.5, 4000))]  # fmt: skip


def run(model: str, seed: int, frame: int, timestep_fs: float, steps: int) -> tuple[float, float, float]:
    """(max |E - E0| meV, E_end - E0 meV, mean kinetic energy eV) of one NVE run."""
    positions = ala2_allatom_frames()[0][frame] * ANGSTROM_PER_NM
    atoms = Atoms(symbols=ala2_allatom_topology().bead_types, positions=positions)
    atoms.set_constraint(hydrogen_bond_constraints(atoms))
    atoms.calc = GNNMDCalculator(model=model, device="cpu", dtype="float64")
    thermalize_momenta(atoms, 300.0, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    total, kinetic = [], []
    dynamics.attach(
        lambda: (total.append(atoms.get_total_energy()), kinetic.append(atoms.get_kinetic_energy()))
    )
    dynamics.run(steps)
    deviation = np.array(total) - total[0]
    return 1000.0 * float(np.abs(deviation).max()), 1000.0 * float(deviation[-1]), float(np.mean(kinetic))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ala2-allatom", help="shipped model name or checkpoint path")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| seed | frame | dt (fs) | steps | max abs(E - E0) (meV) | E_end - E0 (meV) | mean KE (eV) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for seed, frame, timestep_fs, steps in RUNS:
        largest, change, kinetic = run(args.model, seed, frame, timestep_fs, steps)
        print(
            f"| {seed} | {frame} | {timestep_fs} | {steps} | {largest:.2f} | {change:.2f} | {kinetic:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
