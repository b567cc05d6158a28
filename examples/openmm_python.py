"""Run a gnnmd CG potential inside OpenMM from Python: chignolin, Langevin dynamics, DCD + energy log.

    python examples/openmm_python.py [--steps 2000] [--route torch|python] [--out out/openmm_python]

The System has one particle per bead (bead masses in amu) and one gnnmd force:
a TorchForce (route "torch", the module runs in OpenMM's C++) or a PythonForce
(route "python", the model runs in this process). The trajectory is a DCD of
the CG beads, readable by mdtraj with the CG PDB written beside it. Units: nm,
ps, K, kJ/mol; the time step is given in fs. The shipped default model is
untrained: the run shows the machinery, not physical dynamics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mdtraj
import numpy as np

import gnnmd  # noqa: F401  (imports torch before openmm: the openmm-torch import-order trap)
from gnnmd.engine import LangevinSettings
from gnnmd.openmm import create_simulation
from gnnmd.systems import load_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--system", default="chignolin", help="shipped system or PDB path (default: chignolin)"
    )
    parser.add_argument("--model", default="default", help="shipped model or checkpoint (default: default)")
    parser.add_argument(
        "--route", choices=("torch", "python"), default="torch", help="force route (default: torch)"
    )
    parser.add_argument("--platform", default="auto", help="Reference, CPU, CUDA or auto (default: auto)")
    parser.add_argument("--steps", type=int, default=2000, help="Langevin steps of --dt-fs (default: 2000)")
    parser.add_argument("--dt-fs", type=float, default=4.0, help="time step in fs (default: 4)")
    parser.add_argument("--every", type=int, default=100, help="steps between frames (default: 100)")
    parser.add_argument("--out", type=Path, default=Path("out/openmm_python"), help="output folder")
    args = parser.parse_args(argv)

    system = load_system(args.system)
    args.out.mkdir(parents=True, exist_ok=True)
    trajectory, log = args.out / f"{system.name}.dcd", args.out / f"{system.name}_energy.csv"
    simulation = create_simulation(
        system, args.model, route=args.route, platform=args.platform, langevin=LangevinSettings(args.dt_fs),
        seed=1, trajectory=trajectory, energy_log=log, report_interval=args.every,
    )  # fmt: skip
    simulation.step(args.steps)
    del simulation  # closes the DCD file

    topology = system.topology.to_mdtraj()
    mdtraj.Trajectory(system.positions_nm[None], topology).save_pdb(str(args.out / f"{system.name}_cg.pdb"))
    frames = mdtraj.load_dcd(str(trajectory), top=topology)
    native = mdtraj.Trajectory(system.positions_nm[None], topology)
    rmsd_nm = mdtraj.rmsd(frames, native)
    energies = np.loadtxt(log, delimiter=",", usecols=2)
    print(f"{trajectory}: {frames.n_frames} frames of {frames.n_atoms} beads ({args.route} route)")
    print(f"potential energy: first {energies[0]:.1f}, last {energies[-1]:.1f} kJ/mol")
    print(f"RMSD to native: last frame {10 * rmsd_nm[-1]:.2f} Å, mean {10 * rmsd_nm.mean():.2f} Å")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
