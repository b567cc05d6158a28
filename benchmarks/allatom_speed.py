"""Speed of the all-atom reference dynamics behind ``gnnmd data allatom``, per system.

    OPENMM_CPU_THREADS=2 python benchmarks/allatom_speed.py chignolin engrailed --steps 500

For each system, builds the generator's OpenMM simulation (amber14 + GBn2, no
cutoff, X–H constraints, 2 fs; set-up and minimisation not timed), runs
``--warmup`` steps, then times ``--steps`` steps and reports atoms, ms/step and
ns/day, and the days one ns of reference data would take.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gnnmd.data.allatom import AllAtomSettings, Generator, resolve_platform
from gnnmd.systems import load_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("systems", nargs="+", help="shipped system names or PDB paths")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--platform", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = AllAtomSettings(temperature_k=340.0, platform=resolve_platform(args.platform))
    rows = []
    for name in args.systems:
        with tempfile.TemporaryDirectory() as scratch:
            generator = Generator(load_system(name), Path(scratch) / "data.h5", settings)
            generator.integrator.step(args.warmup)
            started = time.perf_counter()
            generator.integrator.step(args.steps)
            generator.context.getState(getEnergy=True)  # waits for asynchronous platforms
            seconds = time.perf_counter() - started
        ns_per_day = args.steps * settings.timestep_fs * 1e-6 / seconds * 86400.0
        row = {"system": name, "atoms": generator.topology.getNumAtoms(), "platform": settings.platform,
               "ms_per_step": 1e3 * seconds / args.steps, "ns_per_day": ns_per_day,
               "days_per_ns": 1.0 / ns_per_day}  # fmt: skip
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
