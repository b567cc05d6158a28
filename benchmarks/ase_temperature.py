"""Does ASE Langevin dynamics hold its thermostat's temperature with a model? Time step and reference.

Usage (from the repository root):
    .venv/bin/python benchmarks/ase_temperature.py out/ethanol-dft/train/best.pt \
        out/ethanol-dft/ethanol_frames.xyz --timesteps 0.5,0.25 --xtb

Runs Langevin dynamics at 300 K (friction 0.01/fs, centre of mass fixed by a constraint) from
the first frame of FRAMES (any file ASE reads) with the gnnmd model at each time step, and with
``--xtb`` with GFN2-xTB itself (tblite) at the first time step as the control; prints the mean
temperature of the second half of each run, in K. A temperature above the thermostat's that
falls with the time step is integration error of a rough potential surface; one that stays is not.
"""

from __future__ import annotations

import argparse

import ase.io
import numpy as np
from ase import units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution


def mean_temperature(atoms, timestep_fs: float, picoseconds: float, seed: int = 0) -> float:
    """Mean temperature (K) over the second half of a Langevin run of ``atoms`` (its calculator)."""
    atoms.set_constraint(FixCom())
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
    dynamics = Langevin(atoms, timestep_fs * units.fs, temperature_K=300.0, friction=0.01 / units.fs,
                        fixcm=False, rng=np.random.default_rng(seed + 1))  # fmt: skip
    steps = int(round(picoseconds * 1000 / timestep_fs))
    chunk = max(1, int(round(10 / timestep_fs)))  # a sample every 10 fs
    temperatures = []
    for _ in range(steps // chunk):
        dynamics.run(chunk)
        temperatures.append(atoms.get_temperature())
    return float(np.mean(temperatures[len(temperatures) // 2 :]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="gnnmd model (name or checkpoint)")
    parser.add_argument("frames", help="structure file ASE reads; the first frame starts the runs")
    parser.add_argument("--timesteps", default="0.5,0.25", help="fs, comma-separated (0.5,0.25)")
    parser.add_argument("--picoseconds", type=float, default=4.0, help="per run (4)")
    parser.add_argument("--seeds", type=int, default=2, help="runs per case, averaged (2)")
    parser.add_argument("--xtb", action="store_true", help="also run GFN2-xTB itself (tblite)")
    args = parser.parse_args(argv)
    from gnnmd.ase import GNNMDCalculator

    start = ase.io.read(args.frames, index=0)
    timesteps = [float(t) for t in args.timesteps.split(",")]
    cases = [("model", GNNMDCalculator(model=args.model), t) for t in timesteps]
    if args.xtb:
        from tblite.ase import TBLite

        cases.append(("GFN2-xTB", TBLite(method="GFN2-xTB", verbosity=0), timesteps[0]))
    for label, calculator, timestep in cases:
        values = []
        for seed in range(args.seeds):
            atoms = start.copy()
            atoms.calc = calculator
            values.append(mean_temperature(atoms, timestep, args.picoseconds, seed=2 * seed))
        print(f"{label:10s} dt {timestep:5.2f} fs: mean T {np.mean(values):6.1f} K "
              f"(runs: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
